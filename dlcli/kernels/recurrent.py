"""Recurrent kernels: the time loop of simple_rnn, forward and backward (BPTT), and the pieces lstm.py and gru.py share.

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
Without recurrent dropout the dropout masks and the gate blocks are None, not empty arrays, and without
masking so is the step mask: Numba prunes the branch of an `is None` test on an argument before it types the
function, so a run compiles only what it uses (the per-gate products cost a GRU's kernels 0.5 s of
compilation on an empty cache, the masked steps 0.1-0.3 s more, measured with benchmarks/compile_time.py).

Activations go by code, with the branch outside each loop, and their derivatives (from the outputs) by a
polynomial whose terms the code picks, so every loop is straight arithmetic that LLVM turns into SIMD. The
scalar tanh and sigmoid overloads are not inline="always": Numba's own inlining re-typed them at every call
site and doubled the compile time of activate_row and lstm_cell_row (1.06 -> 0.53 s, 0.89 -> 0.30 s), while
LLVM inlines and vectorizes them all the same (the same run time, measured). In
float32 tanh (and sigmoid, through tanh) is a rational approximation: libm's tanhf and expf are scalar calls and
cost 14x more here. Float64 (the gradient checks) keeps NumPy's exact functions.

simple_rnn and lstm split the batch rows into one block per Numba thread (in_parts): rows never interact
through time, so each block runs the whole time loop on its own thread, with its own small GEMMs (SciPy's BLAS
held to one thread), and the threads meet once per call, not once per step. Inside a block each row's gates,
cell and state are done in one pass while the row is in L1. The kernels use no NumPy slice assignment
(copy_row, zero_rows): its broadcasting code took seconds to compile, and every new environment compiles them.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from dlcli.kernels.parts import in_parts

LINEAR, RELU, TANH, SIGMOID = 0, 1, 2, 3  # activation codes (strings do not vectorize)


def tanh_scalar(x: float) -> float:  # pragma: no cover - compiled code calls the overload below
    return np.tanh(x)


@overload(tanh_scalar, jit_options={"no_cpython_wrapper": True, "no_cfunc_wrapper": True})
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


def sigmoid_scalar(x: float) -> float:  # pragma: no cover - compiled code calls the overload below
    return 1.0 / (1.0 + np.exp(-x))


@overload(sigmoid_scalar, jit_options={"no_cpython_wrapper": True, "no_cfunc_wrapper": True})
def _sigmoid_overload(x):  # type: ignore[no-untyped-def]
    # sigmoid(x) = (1 + tanh(x / 2)) / 2: no exp to overflow, and the fast tanh in float32
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: np.float32(0.5) + np.float32(0.5) * tanh_scalar(np.float32(0.5) * x)
    return lambda x: 0.5 + 0.5 * np.tanh(0.5 * x)


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def activate(z: np.ndarray, add: np.ndarray, bias: np.ndarray, col0: int, col1: int, code: int) -> None:
    """z[:, col0:col1] = activation(z + add + bias) over those columns, in place.

    In place on purpose: with a separate output LLVM must check at run time that it does not overlap the
    inputs, and an output that is one of them fails the check and runs scalar, 8x slower.
    """
    # typed: an int literal would promote float32 arithmetic to float64 (a constant, where np.zeros(1, dtype)[0]
    # compiled NumPy's allocation for the dtype too: 0.05-0.2 s on an empty cache)
    zero = z.dtype.type(0)
    b = bias[col0:col1]
    for n in range(z.shape[0]):
        # 1-D views indexed from 0: LLVM vectorizes only an index it knows is not negative
        row, y = z[n, col0:col1], add[n, col0:col1]
        if code == TANH:
            for j in range(row.size):
                row[j] = tanh_scalar(row[j] + y[j] + b[j])
        elif code == SIGMOID:
            for j in range(row.size):
                row[j] = sigmoid_scalar(row[j] + y[j] + b[j])
        elif code == RELU:
            for j in range(row.size):
                row[j] = max(row[j] + y[j] + b[j], zero)
        else:
            for j in range(row.size):
                row[j] += y[j] + b[j]


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)  # a Python entry point: the tests call it
def slope_terms(code: int, like: np.ndarray) -> tuple[float, float, float, float]:
    """(t0, t1, t2, floor) in like's dtype: activation'(x) = t0 + y (t1 + t2 y) where its output y > floor,
    else 0. A tuple, not an array: values in registers, which stores to other arrays cannot alias."""
    one = like.dtype.type(1)  # a constant in like's dtype (np.ones(1, dtype)[0] compiled an allocation)
    zero, low = one - one, -np.inf * one
    if code == TANH:  # 1 - y^2
        return one, zero, -one, low
    if code == SIGMOID:  # y (1 - y)
        return zero, one, -one, low
    return one, zero, zero, zero if code == RELU else low  # relu: 1 where y > 0; linear: 1


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)  # a Python entry point: the tests call it
def slope(y: float, terms: tuple[float, float, float, float]) -> float:
    """The activation's derivative from its output y (terms from slope_terms). A plain call, not inline="always":
    Numba re-typed the inlined body at each of gru_backward's four call sites (LLVM still inlines it)."""
    return (terms[0] + y * (terms[1] + terms[2] * y)) if y > terms[3] else y * 0


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def copy_row(source: np.ndarray, target: np.ndarray) -> None:
    """target[:] = source for 1-D arrays, as a loop: NumPy-style slice assignment costs seconds of compilation
    (broadcasting machinery) where this costs nothing, and the kernels run on a cold cache in every new
    environment."""
    for j in range(target.size):
        target[j] = source[j]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def zero_rows(target: np.ndarray) -> None:
    """target[:] = 0 for a 2-D array, as a loop (see copy_row)."""
    for n in range(target.shape[0]):
        row = target[n]
        for j in range(row.size):
            row[j] = 0


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def recurrent_product(h: np.ndarray, kernel: np.ndarray, blocks: np.ndarray | None, dropout: np.ndarray | None,
                      out: np.ndarray, h_scratch: np.ndarray, z_scratch: np.ndarray) -> None:
    """out (N, k*U) = h @ kernel; with recurrent dropout (one (N, U) mask per gate), gate g's block of out is
    (h * dropout[g]) @ blocks[g], for the k blocks (U, U) of kernel; dropout and blocks are None without it."""
    if dropout is None:
        np.dot(h, kernel, out)
        return
    rows, units = h.shape
    for g in range(blocks.shape[0]):
        for n in range(rows):
            hn, mn, sn = h[n], dropout[g, n], h_scratch[n]
            for u in range(units):
                sn[u] = hn[u] * mn[u]
        np.dot(h_scratch, blocks[g], z_scratch)
        for n in range(rows):
            copy_row(z_scratch[n], out[n, g * units:(g + 1) * units])


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def recurrent_grad(d: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray | None, dropout: np.ndarray | None,
                   out: np.ndarray, d_scratch: np.ndarray, h_scratch: np.ndarray) -> None:
    """out (N, U) = the gradient reaching h from d (N, k*U) = d(h @ kernel): d @ kernel.T, or per gate with dropout
    (None without)."""
    if dropout is None:
        np.dot(d, kernel_t, out)
        return
    rows, units = out.shape
    zero_rows(out)
    for g in range(blocks_t.shape[0]):
        for n in range(rows):
            copy_row(d[n, g * units:(g + 1) * units], d_scratch[n])
        np.dot(d_scratch, blocks_t[g], h_scratch)
        for n in range(rows):
            on, hn, mn = out[n], h_scratch[n], dropout[g, n]
            for u in range(units):
                on[u] += hn[u] * mn[u]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def add_rows(d: np.ndarray, step: np.ndarray, total: np.ndarray) -> None:
    """total += the column sums of d (N, W): the bias gradient, step by step. Each step sums in d's dtype into
    `step` (W,), then adds to `total` in float64, so 64000 float32 rows lose nothing to rounding."""
    for j in range(step.size):
        step[j] = 0
    for n in range(d.shape[0]):
        row = d[n]
        for j in range(row.size):
            step[j] += row[j]
    for j in range(step.size):
        total[j] += step[j]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def add_output_grad(d_hs: np.ndarray, t: int, n: int, dh: np.ndarray) -> None:
    """dh += d_hs[t, n]: the gradient on step t's output, when every step is an output (d_hs not empty)."""
    if d_hs.shape[0]:
        g = d_hs[t, n]
        for u in range(dh.size):
            dh[u] += g[u]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def carry_masked_rows(mask: np.ndarray, t: int, source: np.ndarray, target: np.ndarray) -> None:
    """target[n] = source[n] for every row n whose step t is masked."""
    for n in range(target.shape[0]):
        if mask is not None and not mask[n, t]:
            copy_row(source[n], target[n])


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def slots(t: int, reverse: bool) -> tuple[int, int]:
    """(slot read, slot written) by the step at time t."""
    return (t + 1, t) if reverse else (t, t + 1)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"},
            no_cpython_wrapper=True, no_cfunc_wrapper=True)
def activate_row(row: np.ndarray, add: np.ndarray, bias: np.ndarray, code: int) -> None:
    """row = activation(row + add + bias), in place, over 1-D views indexed from 0 (see activate)."""
    zero = row[0] * 0
    if code == TANH:
        for j in range(row.size):
            row[j] = tanh_scalar(row[j] + add[j] + bias[j])
    elif code == SIGMOID:
        for j in range(row.size):
            row[j] = sigmoid_scalar(row[j] + add[j] + bias[j])
    elif code == RELU:
        for j in range(row.size):
            row[j] = max(row[j] + add[j] + bias[j], zero)
    else:
        for j in range(row.size):
            row[j] += add[j] + bias[j]


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def simple_rnn_forward_rows(xw: np.ndarray, bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray | None,
                            dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                            hs: np.ndarray, lo: int, hi: int) -> None:
    """simple_rnn_forward for the batch rows [lo, hi)."""
    steps, units, rows = xw.shape[0], xw.shape[2], hi - lo
    h_scratch, z_scratch = np.empty((rows, units), xw.dtype), np.empty((rows, units), xw.dtype)
    drop = dropout if dropout is None else dropout[:, lo:hi]
    for step in range(steps):
        t = steps - 1 - step if reverse else step
        prev, cur = slots(t, reverse)
        h_prev, h, x = hs[prev, lo:hi], hs[cur, lo:hi], xw[t, lo:hi]
        recurrent_product(h_prev, kernel, blocks, drop, h, h_scratch, z_scratch)
        for r in range(rows):
            activate_row(h[r], x[r], bias, activation)
            if mask is not None and not mask[lo + r, t]:
                copy_row(h_prev[r], h[r])


def simple_rnn_forward(xw: np.ndarray, bias: np.ndarray, kernel: np.ndarray, blocks: np.ndarray | None,
                       dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                       hs: np.ndarray) -> None:
    """h_t = activation(xw_t + bias + h_{t-1} @ kernel) for every step; hs (T + 1, N, U) holds the initial state
    in the slot the first step reads (0, or T in reverse) and receives every other state."""
    in_parts(simple_rnn_forward_rows, xw.shape[1], xw, bias, kernel, blocks, dropout, mask, reverse, activation, hs)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def simple_rnn_backward_rows(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray | None,
                             dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int,
                             hs: np.ndarray, dz: np.ndarray, d_first: np.ndarray, total: np.ndarray, lo: int,
                             hi: int) -> None:
    """simple_rnn_backward for the batch rows [lo, hi); total (U,) float64 receives their bias gradient."""
    steps, units, rows = dz.shape[0], d_last.shape[1], hi - lo
    dh, dh_new = d_last[lo:hi].copy(), np.empty((rows, units), d_hs.dtype)
    d_scratch, h_scratch = np.empty((rows, units), d_hs.dtype), np.empty((rows, units), d_hs.dtype)
    terms, step_sum = slope_terms(activation, d_hs), np.empty(units, d_hs.dtype)
    drop = dropout if dropout is None else dropout[:, lo:hi]
    for step in range(steps):
        t = step if reverse else steps - 1 - step
        h, d = hs[slots(t, reverse)[1], lo:hi], dz[t, lo:hi]
        for r in range(rows):
            n, dhn, dn, hn = lo + r, dh[r], d[r], h[r]
            add_output_grad(d_hs, t, n, dhn)
            if mask is None or mask[n, t]:
                for u in range(units):
                    dn[u] = dhn[u] * slope(hn[u], terms)
            else:
                zero_rows(d[r:r + 1])
        add_rows(d, step_sum, total)
        recurrent_grad(d, kernel_t, blocks_t, drop, dh_new, d_scratch, h_scratch)
        for r in range(rows):
            if mask is None or mask[lo + r, t]:
                copy_row(dh_new[r], dh[r])
    for r in range(rows):
        copy_row(dh[r], d_first[lo + r])


def simple_rnn_backward(d_hs: np.ndarray, d_last: np.ndarray, kernel_t: np.ndarray, blocks_t: np.ndarray | None,
                        dropout: np.ndarray | None, mask: np.ndarray, reverse: bool, activation: int, hs: np.ndarray,
                        dz: np.ndarray, d_first: np.ndarray, d_bias: np.ndarray) -> None:
    """dz (T, N, U) = the gradient of each step's pre-activation, given the gradient on each step's output d_hs
    (T, N, U; or (0, N, U) when only the final state is an output) and on the final state d_last (N, U);
    d_first (N, U) = the gradient of the initial state; d_bias (U,) = the sum of dz."""
    totals = in_parts(simple_rnn_backward_rows, d_last.shape[0], d_hs, d_last, kernel_t, blocks_t, dropout, mask,
                      reverse, activation, hs, dz, d_first, totals=d_bias.size)
    d_bias[:] = totals.sum(axis=0)
