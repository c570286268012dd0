"""GRU kernels, Keras' gate order z, r, h: the time loop forward and backward (BPTT), as in kernels/recurrent.py.

reset_after (Keras' default, PyTorch's GRU): candidate = activation(xw_h + r * (h @ kernel_h + bias_h)), one
GEMM h @ kernel (U, 3U) per step; the kernels get kernel_h None. reset_before: candidate = activation(xw_h +
(r * h) @ kernel_h), so each step needs a second GEMM once r is known, and kernel holds only the z and r blocks
(U, 2U). None rather than a flag, as for the dropout masks (recurrent.py): Numba prunes the variant a run does
not use before typing it, so it compiles one (0.55 s less for the two kernels on an empty cache). No NumPy slice
assignment or array expression (recurrent.py's docstring says why): gru_forward took 7.3 s to compile with
them, most of it in the broadcasting error path.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.recurrent import (
    activate, add_output_grad, add_rows, carry_masked_rows, copy_row, recurrent_grad, recurrent_product, slope,
    slope_terms, slots, zero_rows,
)


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def gru_forward(gates: np.ndarray, input_bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray | None,
                dropout: np.ndarray | None, kernel_h: np.ndarray | None, recurrent_bias: np.ndarray, mask: np.ndarray,
                reverse: bool, activation: int, recurrent_activation: int, hs: np.ndarray,
                saved: np.ndarray) -> None:
    """gates (T, N, 3U) comes in as xw (bias not yet added) and leaves as z, r and the candidate; hs (T + 1, N, U)
    holds the initial state in the slot the first step reads (0, or T in reverse) and receives the others.

    saved (T, N, U) keeps what the backward pass needs: h @ kernel_h + bias_h (reset_after: kernel_h is None),
    or the reset state r * h (reset_before). input_bias (3U,) is Keras' bias[0] (or its whole bias when
    reset_before) and recurrent_bias (3U,) its bias[1] (zeros when reset_before); zeros without use_bias.
    """
    steps, rows, width = gates.shape
    units, inner = width // 3, kernel.shape[1]
    zr, hz = np.empty((rows, inner), gates.dtype), np.empty((rows, units), gates.dtype)
    h_scratch, z_scratch = np.empty((rows, units), gates.dtype), np.empty((rows, units), gates.dtype)
    recurrent_h = np.empty((rows, width), gates.dtype)  # columns 2U: the recurrent part of the candidate
    zero_rows(recurrent_h)  # not np.zeros: each allocation spelling is one more Numba variant to compile
    gate_bias, bias_h = np.empty(2 * units, gates.dtype), recurrent_bias[2 * units:]
    for u in range(2 * units):
        gate_bias[u] = input_bias[u] + recurrent_bias[u]
    first = units - units
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        prev, cur = slots(t, reverse)
        h_prev, h, z, s = hs[prev], hs[cur], gates[t], saved[t]
        recurrent_product(h_prev, kernel, blocks, dropout, zr, h_scratch, z_scratch)
        # col0 a variable, not the literal 0: a literal argument types as Literal[int](0), a second specialization
        activate(z, zr, gate_bias, first, 2 * units, recurrent_activation)
        for n in range(rows):
            r, sn, rh = z[n, units:2 * units], s[n], recurrent_h[n, 2 * units:]
            if kernel_h is None:  # reset_after
                product = zr[n, 2 * units:]
                for u in range(units):
                    sn[u] = product[u] + bias_h[u]
                    rh[u] = r[u] * sn[u]
            else:
                hp = h_prev[n]
                for u in range(units):
                    sn[u] = r[u] * hp[u]
                if dropout is not None:
                    drop = dropout[2, n]
                    for u in range(units):
                        sn[u] *= drop[u]
        if kernel_h is not None:
            np.dot(s, kernel_h, hz)
            for n in range(rows):
                copy_row(hz[n], recurrent_h[n, 2 * units:])
        activate(z, recurrent_h, input_bias, 2 * units, width, activation)
        for n in range(rows):
            zg, cand, hp, hn = z[n, :units], z[n, 2 * units:], h_prev[n], h[n]
            for u in range(units):  # z * h_prev + (1 - z) * candidate
                hn[u] = cand[u] + zg[u] * (hp[u] - cand[u])
        carry_masked_rows(mask, t, h_prev, h)


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def gru_backward(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray | None,
                 dropout: np.ndarray | None, kernel_h_t: np.ndarray | None, mask: np.ndarray, reverse: bool,
                 activation: int, recurrent_activation: int, hs: np.ndarray, gates: np.ndarray, saved: np.ndarray,
                 d_in: np.ndarray, d_rec: np.ndarray, d_first: np.ndarray, d_input_bias: np.ndarray,
                 d_recurrent_bias: np.ndarray) -> None:
    """BPTT from the gradients on the outputs: d_hs (T, N, U) on every step's, or (0, N, U) when only the final
    state is an output, and d_last (N, U) on the final state; kernel_h_t is None for reset_after.

    d_in (T, N, 3U) receives the gradients of the input projections (z, r, candidate); d_rec (T, N, inner) those
    of h @ kernel (+ bias_h): for reset_after the candidate's block is d_candidate * r. d_first (N, U) receives
    the gradient of the initial state, d_input_bias (3U,) and d_recurrent_bias (inner,) the sums.
    """
    steps, (rows, units) = d_in.shape[0], d_last.shape
    width, inner = 3 * units, d_rec.shape[2]
    dh, dh_new = d_last.copy(), np.empty((rows, units), d_hs.dtype)
    dh_direct, d_reset = np.empty((rows, units), d_hs.dtype), np.empty((rows, units), d_hs.dtype)
    d_cand = np.empty((rows, units), d_hs.dtype)
    d_scratch, h_scratch = np.empty((rows, units), d_hs.dtype), np.empty((rows, units), d_hs.dtype)
    act, rec = slope_terms(activation, d_hs), slope_terms(recurrent_activation, d_hs)
    sum_in, sum_rec = np.empty(width, d_hs.dtype), np.empty(inner, d_hs.dtype)
    total_in, total_rec = np.empty(width, np.float64), np.empty(inner, np.float64)  # float64 sums (add_rows)
    for j in range(width):  # not np.zeros(n): its default dtype compiled three allocator variants of its own
        total_in[j] = 0.0
    for j in range(inner):
        total_rec[j] = 0.0
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        h_prev, z, s, di, dr = hs[slots(t, reverse)[0]], gates[t], saved[t], d_in[t], d_rec[t]
        for n in range(rows):
            dhn, dcn, ddn = dh[n], d_cand[n], dh_direct[n]
            add_output_grad(d_hs, t, n, dhn)
            if mask is not None and not mask[n, t]:  # h was carried over: its gradient passes through; this step's gates get none
                zero_rows(d_cand[n:n + 1])
                zero_rows(dh_direct[n:n + 1])
                zero_rows(di[n:n + 1])
                continue
            zg, cand, hp = z[n, :units], z[n, 2 * units:], h_prev[n]
            d_z, d_c = di[n, :units], di[n, 2 * units:]
            for u in range(units):
                dcn[u] = (dhn[u] - dhn[u] * zg[u]) * slope(cand[u], act)
                d_z[u] = dhn[u] * (hp[u] - cand[u]) * slope(zg[u], rec)
                d_c[u] = dcn[u]
                ddn[u] = dhn[u] * zg[u]
        if kernel_h_t is None:  # reset_after
            for n in range(rows):
                r, sn, dcn = z[n, units:2 * units], s[n], d_cand[n]
                d_r, d_rh = di[n, units:2 * units], dr[n, 2 * units:]
                for u in range(units):
                    d_r[u] = dcn[u] * sn[u] * slope(r[u], rec)
                    d_rh[u] = dcn[u] * r[u]
        else:  # d(r * h) through the second product, then into r and into h
            np.dot(d_cand, kernel_h_t, d_reset)
            for n in range(rows):
                r, d_r = z[n, units:2 * units], di[n, units:2 * units]
                hp, drn, ddn = h_prev[n], d_reset[n], dh_direct[n]
                if dropout is not None:
                    drop = dropout[2, n]
                    for u in range(units):
                        drn[u] *= drop[u]
                for u in range(units):
                    d_r[u] = drn[u] * hp[u] * slope(r[u], rec)
                    ddn[u] += drn[u] * r[u]
        for n in range(rows):
            copy_row(di[n, :2 * units], dr[n, :2 * units])
        add_rows(di, sum_in, total_in)
        add_rows(dr, sum_rec, total_rec)
        recurrent_grad(dr, kernel_t, blocks_t, dropout, dh_new, d_scratch, h_scratch)
        for n in range(rows):
            if mask is None or mask[n, t]:
                dhn, dnn, ddn = dh[n], dh_new[n], dh_direct[n]
                for u in range(units):
                    dhn[u] = dnn[u] + ddn[u]
    for n in range(rows):
        copy_row(dh[n], d_first[n])
    for j in range(width):
        d_input_bias[j] = total_in[j]
    for j in range(inner):
        d_recurrent_bias[j] = total_rec[j]
