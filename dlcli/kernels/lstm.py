"""LSTM kernels, Keras' gate order i, f, c, o: the time loop forward and backward (BPTT), as in kernels/recurrent.py.

c_t = f * c_{t-1} + i * g and h_t = o * activation(c_t); each row's gates, cell and state in one pass
(lstm_cell_row) while the row is in L1, the batch rows split over threads as simple_rnn's are.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts
from dlcli.kernels.recurrent import (
    RELU, SIGMOID, TANH, activate_row, add_output_grad, add_rows, copy_row, recurrent_grad,
    recurrent_product, sigmoid_scalar, slope, slope_terms, slots, tanh_scalar, zero_rows,
)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"}, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def lstm_cell_row(i: np.ndarray, f: np.ndarray, g: np.ndarray, o: np.ndarray, c_prev: np.ndarray, c: np.ndarray,
                  a: np.ndarray, h: np.ndarray, code: int) -> None:
    """c = f * c_prev + i * g, a = activation(c), h = o * a over one row, in one pass."""
    zero = c[0] * 0
    if code == TANH:
        for u in range(c.size):
            cu = f[u] * c_prev[u] + i[u] * g[u]
            au = tanh_scalar(cu)
            c[u], a[u], h[u] = cu, au, o[u] * au
    elif code == SIGMOID:
        for u in range(c.size):
            cu = f[u] * c_prev[u] + i[u] * g[u]
            au = sigmoid_scalar(cu)
            c[u], a[u], h[u] = cu, au, o[u] * au
    elif code == RELU:
        for u in range(c.size):
            cu = f[u] * c_prev[u] + i[u] * g[u]
            au = max(cu, zero)
            c[u], a[u], h[u] = cu, au, o[u] * au
    else:
        for u in range(c.size):
            cu = f[u] * c_prev[u] + i[u] * g[u]
            c[u], a[u], h[u] = cu, cu, o[u] * cu


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def lstm_forward_rows(gates: np.ndarray, bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray | None,
                      dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                      recurrent_activation: int, hs: np.ndarray, cs: np.ndarray, act_c: np.ndarray, lo: int,
                      hi: int) -> None:
    """lstm_forward for the batch rows [lo, hi): each step one GEMM, then every row's gates and state in one
    pass over that row, while it is in L1."""
    steps, width, rows = gates.shape[0], gates.shape[2], hi - lo
    units = width // 4
    zr = np.empty((rows, width), gates.dtype)
    h_scratch, z_scratch = np.empty((rows, units), gates.dtype), np.empty((rows, units), gates.dtype)
    drop = dropout if dropout is None else dropout[:, lo:hi]
    b_if, b_g, b_o = bias[:2 * units], bias[2 * units:3 * units], bias[3 * units:]
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        prev, cur = slots(t, reverse)
        h_prev, h, c_prev, c = hs[prev, lo:hi], hs[cur, lo:hi], cs[prev, lo:hi], cs[cur, lo:hi]
        z, a = gates[t, lo:hi], act_c[t, lo:hi]
        recurrent_product(h_prev, kernel, blocks, drop, zr, h_scratch, z_scratch)
        for r in range(rows):
            zn, q = z[r], zr[r]
            activate_row(zn[:2 * units], q[:2 * units], b_if, recurrent_activation)
            activate_row(zn[2 * units:3 * units], q[2 * units:3 * units], b_g, activation)
            activate_row(zn[3 * units:], q[3 * units:], b_o, recurrent_activation)
            lstm_cell_row(zn[:units], zn[units:2 * units], zn[2 * units:3 * units], zn[3 * units:], c_prev[r],
                          c[r], a[r], h[r], activation)
            if mask is not None and not mask[lo + r, t]:  # keep the previous state (a keeps this step's value, unused)
                copy_row(h_prev[r], h[r])
                copy_row(c_prev[r], c[r])


def lstm_forward(gates: np.ndarray, bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray | None,
                 dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                 recurrent_activation: int, hs: np.ndarray, cs: np.ndarray, act_c: np.ndarray) -> None:
    """LSTM steps, Keras' gate order i, f, c, o: gates (T, N, 4U) comes in as xw (bias not yet added) and leaves
    as the activated gates; hs and cs (T + 1, N, U) hold the initial h and c in the slot the first step reads
    (0, or T in reverse) and receive the others, act_c (T, N, U) activation(c)."""
    in_parts(lstm_forward_rows, gates.shape[1], gates, bias, kernel, blocks, dropout, mask, reverse, activation,
             recurrent_activation, hs, cs, act_c)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def lstm_backward_rows(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray | None,
                       dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                       recurrent_activation: int, gates: np.ndarray, cs: np.ndarray, act_c: np.ndarray,
                       dz: np.ndarray, dc_last: np.ndarray, d_first: np.ndarray, dc_first: np.ndarray,
                       total: np.ndarray, lo: int, hi: int) -> None:
    """lstm_backward for the batch rows [lo, hi); total (4U,) float64 receives their bias gradient."""
    steps, units, rows = dz.shape[0], d_last.shape[1], hi - lo
    dh, dc = d_last[lo:hi].copy(), dc_last[lo:hi].copy()
    dh_new = np.empty((rows, units), d_hs.dtype)
    d_scratch, h_scratch = np.empty((rows, units), d_hs.dtype), np.empty((rows, units), d_hs.dtype)
    act, rec = slope_terms(activation, d_hs), slope_terms(recurrent_activation, d_hs)
    step_sum = np.empty(4 * units, d_hs.dtype)
    drop = dropout if dropout is None else dropout[:, lo:hi]
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        z, a, c_prev, d = gates[t, lo:hi], act_c[t, lo:hi], cs[slots(t, reverse)[0], lo:hi], dz[t, lo:hi]
        for r in range(rows):
            n, dhn, dcn = lo + r, dh[r], dc[r]
            add_output_grad(d_hs, t, n, dhn)
            if mask is not None and not mask[n, t]:  # h and c were carried over: their gradients pass through to the step before
                zero_rows(d[r:r + 1])
                continue
            zn, dn, an, cp = z[r], d[r], a[r], c_prev[r]
            i, f, g, o = zn[:units], zn[units:2 * units], zn[2 * units:3 * units], zn[3 * units:]
            d_i, d_f, d_g, d_o = dn[:units], dn[units:2 * units], dn[2 * units:3 * units], dn[3 * units:]
            for u in range(units):
                dc_u = dcn[u] + dhn[u] * o[u] * slope(an[u], act)
                d_i[u] = dc_u * g[u] * slope(i[u], rec)
                d_f[u] = dc_u * cp[u] * slope(f[u], rec)
                d_g[u] = dc_u * i[u] * slope(g[u], act)
                d_o[u] = dhn[u] * an[u] * slope(o[u], rec)
                dcn[u] = dc_u * f[u]
        add_rows(d, step_sum, total)
        recurrent_grad(d, kernel_t, blocks_t, drop, dh_new, d_scratch, h_scratch)
        for r in range(rows):
            if mask is None or mask[lo + r, t]:
                copy_row(dh_new[r], dh[r])
    for r in range(rows):
        copy_row(dh[r], d_first[lo + r])
        copy_row(dc[r], dc_first[lo + r])


def lstm_backward(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray | None,
                  dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                  recurrent_activation: int, gates: np.ndarray, cs: np.ndarray, act_c: np.ndarray, dz: np.ndarray,
                  dc_last: np.ndarray, d_first: np.ndarray, dc_first: np.ndarray, d_bias: np.ndarray) -> None:
    """dz (T, N, 4U) = the gradient of each step's gate pre-activations, given those on the outputs (d_hs, d_last
    as for simple_rnn_backward) and on the final cell state dc_last (N, U); d_first and dc_first (N, U) = the
    gradients of the initial h and c; d_bias (4U,) = the sum of dz."""
    totals = in_parts(lstm_backward_rows, d_last.shape[0], d_hs, d_last, kernel_t, blocks_t, dropout, mask, reverse,
                      activation, recurrent_activation, gates, cs, act_c, dz, dc_last, d_first, dc_first,
                      totals=d_bias.size)
    d_bias[:] = totals.sum(axis=0)
