"""Recurrent kernels: the time loops of simple_rnn and lstm (gru: kernels/gru.py), forward and backward (BPTT).

One call runs every step of the whole batch. Arrays are time-major: xw (T, N, k*U) holds the input projections
(x @ kernel, one GEMM done by the caller; the kernels add the bias), and the states live in (T + 1, N, U) arrays
where the step at time t reads slot `t` and writes slot `t + 1` (forward), or reads `t + 1` and writes `t`
(reverse, for the backward half of a bidirectional layer): every slot is a C-contiguous (N, U) matrix that
np.dot (BLAS, through SciPy) takes as it is. Each step is one GEMM h @ recurrent_kernel into a scratch buffer
allocated once per call, then the gates in plain loops. The backward pass stores the gates' pre-activation
gradients for every step (and sums the bias gradient as it goes), so the caller finishes d_kernel,
d_recurrent_kernel and d_x as three large GEMMs: one h_prev.T @ dz over all steps took 6 ms where T small ones
accumulated inside the loop took 15 (measured here).

mask (N, T) is True where a step holds data: a masked step keeps the previous state and passes the gradient
through untouched (Keras' masking). Recurrent dropout multiplies h by one mask per gate before the product with
that gate's block of the recurrent kernel, as Keras does: k small GEMMs instead of one, in training only.

Activations go by code, with the branch outside each loop, and their derivatives (from the outputs) by a
polynomial whose terms the code picks, so every loop is straight arithmetic that LLVM turns into SIMD. In
float32 tanh (and sigmoid, through tanh) is a rational approximation: libm's tanhf and expf are scalar calls and
cost 14x more here. Float64 (the gradient checks) keeps NumPy's exact functions.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

LINEAR, RELU, TANH, SIGMOID = 0, 1, 2, 3  # activation codes (strings do not vectorize)


def _tanh(x: float) -> float:  # pragma: no cover - compiled code calls the overload below
    return np.tanh(x)


@overload(_tanh, inline="always")
def _tanh_overload(x):  # type: ignore[no-untyped-def]
    if isinstance(x, types.Float) and x.bitwidth == 32:
        # tanh(x) = x P(x^2) / Q(x^2) on [-9, 9] and +-1 beyond (tanh(9) rounds to 1 in float32): a relative
        # least-squares fit (Sanathanan-Koerner, then Lawson reweighting towards minimax) of degrees 5/3 in x^2;
        # largest error 6e-8 in exact arithmetic, 3.5e-7 evaluated in float32. The clamps pass NaN through.
        def fast_tanh(x):  # type: ignore[no-untyped-def]
            x = min(max(x, np.float32(-9.0)), np.float32(9.0))  # x first: a NaN stays NaN
            s = x * x
            p = np.float32(1.8255186105281991e-11)
            p = p * s + np.float32(-1.2780404054533659e-08)
            p = p * s + np.float32(9.2674039514728011e-06)
            p = p * s + np.float32(2.9207595436759512e-03)
            p = p * s + np.float32(1.2919226119908825e-01)
            p = p * s + np.float32(9.9999994113423185e-01)
            q = np.float32(2.2809991003824642e-04)
            q = q * s + np.float32(2.3763158719709014e-02)
            q = q * s + np.float32(4.6252509962897592e-01)
            q = q * s + np.float32(1.0)
            return min(max(x * p / q, np.float32(-1.0)), np.float32(1.0))
        return fast_tanh
    return lambda x: np.tanh(x)


def _sigmoid(x: float) -> float:  # pragma: no cover - compiled code calls the overload below
    return 1.0 / (1.0 + np.exp(-x))


@overload(_sigmoid, inline="always")
def _sigmoid_overload(x):  # type: ignore[no-untyped-def]
    # sigmoid(x) = (1 + tanh(x / 2)) / 2: no exp to overflow, and the fast tanh in float32
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: np.float32(0.5) + np.float32(0.5) * _tanh(np.float32(0.5) * x)
    return lambda x: 0.5 + 0.5 * np.tanh(0.5 * x)


@numba.njit(cache=True, error_model="numpy")
def activate(z: np.ndarray, add: np.ndarray, bias: np.ndarray, col0: int, col1: int, code: int) -> None:
    """z[:, col0:col1] = activation(z + add + bias) over those columns, in place.

    In place on purpose: with a separate output LLVM must check at run time that it does not overlap the
    inputs, and an output that is one of them fails the check and runs scalar, 8x slower.
    """
    zero = np.zeros(1, z.dtype)[0]  # typed: an int literal would promote float32 arithmetic to float64
    b = bias[col0:col1]
    for n in range(z.shape[0]):
        # 1-D views indexed from 0: LLVM vectorizes only an index it knows is not negative
        row, y = z[n, col0:col1], add[n, col0:col1]
        if code == TANH:
            for j in range(row.size):
                row[j] = _tanh(row[j] + y[j] + b[j])
        elif code == SIGMOID:
            for j in range(row.size):
                row[j] = _sigmoid(row[j] + y[j] + b[j])
        elif code == RELU:
            for j in range(row.size):
                row[j] = max(row[j] + y[j] + b[j], zero)
        else:
            for j in range(row.size):
                row[j] += y[j] + b[j]


@numba.njit(cache=True, error_model="numpy")
def slope_terms(code: int, like: np.ndarray) -> tuple[float, float, float, float]:
    """(t0, t1, t2, floor) in like's dtype: activation'(x) = t0 + y (t1 + t2 y) where its output y > floor,
    else 0. A tuple, not an array: values in registers, which stores to other arrays cannot alias."""
    one = np.ones(1, like.dtype)[0]
    zero, low = one - one, -np.inf * one
    if code == TANH:  # 1 - y^2
        return one, zero, -one, low
    if code == SIGMOID:  # y (1 - y)
        return zero, one, -one, low
    return one, zero, zero, zero if code == RELU else low  # relu: 1 where y > 0; linear: 1


@numba.njit(inline="always")
def slope(y: float, terms: tuple[float, float, float, float]) -> float:
    """The activation's derivative from its output y (terms from slope_terms)."""
    return (terms[0] + y * (terms[1] + terms[2] * y)) if y > terms[3] else y * 0


@numba.njit(cache=True, error_model="numpy")
def recurrent_product(h: np.ndarray, kernel: np.ndarray, blocks: np.ndarray, dropout: np.ndarray,
                      out: np.ndarray, h_scratch: np.ndarray, z_scratch: np.ndarray) -> None:
    """out (N, k*U) = h @ kernel; with recurrent dropout (one (N, U) mask per gate), gate g's block of out is
    (h * dropout[g]) @ blocks[g], for the k blocks (U, U) of kernel."""
    if dropout.shape[0] == 0:
        np.dot(h, kernel, out)
        return
    rows, units = h.shape
    for g in range(blocks.shape[0]):
        for n in range(rows):
            hn, mn, sn = h[n], dropout[g, n], h_scratch[n]
            for u in range(units):
                sn[u] = hn[u] * mn[u]
        np.dot(h_scratch, blocks[g], z_scratch)
        out[:, g * units:(g + 1) * units] = z_scratch


@numba.njit(cache=True, error_model="numpy")
def recurrent_grad(d: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray, dropout: np.ndarray,
                   out: np.ndarray, d_scratch: np.ndarray, h_scratch: np.ndarray) -> None:
    """out (N, U) = the gradient reaching h from d (N, k*U) = d(h @ kernel): d @ kernel.T, or per gate with dropout."""
    if dropout.shape[0] == 0:
        np.dot(d, kernel_t, out)
        return
    rows, units = out.shape
    out[:] = 0
    for g in range(blocks_t.shape[0]):
        d_scratch[:] = d[:, g * units:(g + 1) * units]
        np.dot(d_scratch, blocks_t[g], h_scratch)
        for n in range(rows):
            on, hn, mn = out[n], h_scratch[n], dropout[g, n]
            for u in range(units):
                on[u] += hn[u] * mn[u]


@numba.njit(cache=True, error_model="numpy")
def add_rows(d: np.ndarray, step: np.ndarray, total: np.ndarray) -> None:
    """total += the column sums of d (N, W): the bias gradient, step by step. Each step sums in d's dtype into
    `step` (W,), then adds to `total` in float64, so 64000 float32 rows lose nothing to rounding."""
    step[:] = 0
    for n in range(d.shape[0]):
        row = d[n]
        for j in range(row.size):
            step[j] += row[j]
    for j in range(step.size):
        total[j] += step[j]


@numba.njit(cache=True, error_model="numpy")
def add_output_grad(d_hs: np.ndarray, t: int, n: int, dh: np.ndarray) -> None:
    """dh += d_hs[t, n]: the gradient on step t's output, when every step is an output (d_hs not empty)."""
    if d_hs.shape[0]:
        g = d_hs[t, n]
        for u in range(dh.size):
            dh[u] += g[u]


@numba.njit(cache=True, error_model="numpy")
def carry_masked_rows(mask: np.ndarray, t: int, source: np.ndarray, target: np.ndarray) -> None:
    """target[n] = source[n] for every row n whose step t is masked."""
    for n in range(target.shape[0]):
        if not mask[n, t]:
            target[n] = source[n]


@numba.njit(cache=True, error_model="numpy")
def slots(t: int, reverse: bool) -> tuple[int, int]:
    """(slot read, slot written) by the step at time t."""
    return (t + 1, t) if reverse else (t, t + 1)


@numba.njit(cache=True, error_model="numpy")
def simple_rnn_forward(xw: np.ndarray, bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray,
                       dropout: np.ndarray, mask: np.ndarray, reverse: bool, activation: int, hs: np.ndarray) -> None:
    """h_t = activation(xw_t + bias + h_{t-1} @ kernel) for every step; hs (T + 1, N, U) receives every state."""
    steps, rows, units = xw.shape
    h_scratch, z_scratch = np.empty((rows, units), xw.dtype), np.empty((rows, units), xw.dtype)
    hs[steps if reverse else 0] = 0
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        prev, cur = slots(t, reverse)
        h = hs[cur]
        recurrent_product(hs[prev], kernel, blocks, dropout, h, h_scratch, z_scratch)
        activate(h, xw[t], bias, 0, units, activation)
        carry_masked_rows(mask, t, hs[prev], h)


@numba.njit(cache=True, error_model="numpy")
def simple_rnn_backward(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray,
                        dropout: np.ndarray, mask: np.ndarray, reverse: bool, activation: int, hs: np.ndarray,
                        dz: np.ndarray, d_bias: np.ndarray) -> None:
    """dz (T, N, U) = the gradient of each step's pre-activation, given the gradient on each step's output d_hs
    (T, N, U; or (0, N, U) when only the final state is an output) and on the final state d_last (N, U);
    d_bias (U,) = its sum."""
    steps, (rows, units) = dz.shape[0], d_last.shape
    dh, dh_new = d_last.copy(), np.empty((rows, units), d_hs.dtype)
    d_scratch, h_scratch = np.empty((rows, units), d_hs.dtype), np.empty((rows, units), d_hs.dtype)
    terms, step_sum, total = slope_terms(activation, d_hs), np.empty(units, d_hs.dtype), np.zeros(units)
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        h, d = hs[slots(t, reverse)[1]], dz[t]
        for n in range(rows):
            dhn, dn, hn = dh[n], d[n], h[n]
            add_output_grad(d_hs, t, n, dhn)
            if mask[n, t]:
                for u in range(units):
                    dn[u] = dhn[u] * slope(hn[u], terms)
            else:
                dn[:] = 0
        add_rows(d, step_sum, total)
        recurrent_grad(d, kernel_t, blocks_t, dropout, dh_new, d_scratch, h_scratch)
        carry_masked_rows(mask, t, dh, dh_new)
        dh[:] = dh_new
    d_bias[:] = total


@numba.njit(cache=True, error_model="numpy")
def lstm_forward(gates: np.ndarray, bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray, dropout: np.ndarray,
                 mask: np.ndarray, reverse: bool, activation: int, recurrent_activation: int, hs: np.ndarray,
                 cs: np.ndarray, act_c: np.ndarray) -> None:
    """LSTM steps, Keras' gate order i, f, c, o: gates (T, N, 4U) comes in as xw (bias not yet added) and leaves
    as the activated gates; hs and cs (T + 1, N, U) receive h and c, act_c (T, N, U) activation(c)."""
    steps, rows, width = gates.shape
    units = width // 4
    zr = np.empty((rows, width), gates.dtype)
    h_scratch, z_scratch = np.empty((rows, units), gates.dtype), np.empty((rows, units), gates.dtype)
    zeros, no_bias = np.zeros((rows, units), gates.dtype), np.zeros(units, gates.dtype)
    first = steps if reverse else 0
    hs[first] = 0
    cs[first] = 0
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        prev, cur = slots(t, reverse)
        recurrent_product(hs[prev], kernel, blocks, dropout, zr, h_scratch, z_scratch)
        z = gates[t]
        activate(z, zr, bias, 0, 2 * units, recurrent_activation)
        activate(z, zr, bias, 2 * units, 3 * units, activation)
        activate(z, zr, bias, 3 * units, width, recurrent_activation)
        c, c_prev, a, h = cs[cur], cs[prev], act_c[t], hs[cur]
        for n in range(rows):
            zn, cn, cp, an = z[n], c[n], c_prev[n], a[n]
            i, f, g = zn[:units], zn[units:2 * units], zn[2 * units:3 * units]
            for u in range(units):
                cn[u] = f[u] * cp[u] + i[u] * g[u]
                an[u] = cn[u]
        activate(a, zeros, no_bias, 0, units, activation)
        for n in range(rows):
            o, an, hn = z[n, 3 * units:], a[n], h[n]
            for u in range(units):
                hn[u] = o[u] * an[u]
        carry_masked_rows(mask, t, hs[prev], h)
        carry_masked_rows(mask, t, c_prev, c)


@numba.njit(cache=True, error_model="numpy")
def lstm_backward(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray,
                  dropout: np.ndarray, mask: np.ndarray, reverse: bool, activation: int, recurrent_activation: int,
                  gates: np.ndarray, cs: np.ndarray, act_c: np.ndarray, dz: np.ndarray, d_bias: np.ndarray) -> None:
    """dz (T, N, 4U) = the gradient of each step's gate pre-activations, given those on the outputs (d_hs, d_last
    as for simple_rnn_backward); d_bias (4U,) = its sum."""
    steps, (rows, units) = dz.shape[0], d_last.shape
    width = 4 * units
    dh, dc = d_last.copy(), np.zeros((rows, units), d_hs.dtype)
    dh_new = np.empty((rows, units), d_hs.dtype)
    d_scratch, h_scratch = np.empty((rows, units), d_hs.dtype), np.empty((rows, units), d_hs.dtype)
    act, rec = slope_terms(activation, d_hs), slope_terms(recurrent_activation, d_hs)
    step_sum, total = np.empty(width, d_hs.dtype), np.zeros(width)
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        z, a, c_prev, d = gates[t], act_c[t], cs[slots(t, reverse)[0]], dz[t]
        for n in range(rows):
            dhn, dcn = dh[n], dc[n]
            add_output_grad(d_hs, t, n, dhn)
            if not mask[n, t]:  # h and c were carried over: their gradients pass through to the step before
                d[n] = 0
                continue
            zn, dn, an, cp = z[n], d[n], a[n], c_prev[n]
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
        recurrent_grad(d, kernel_t, blocks_t, dropout, dh_new, d_scratch, h_scratch)
        carry_masked_rows(mask, t, dh, dh_new)
        dh[:] = dh_new
    d_bias[:] = total
