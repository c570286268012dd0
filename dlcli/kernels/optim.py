"""Fused optimizer updates: one in-place pass over a parameter, its gradient and its state, no temporaries.

Each kernel takes flat (1-D, contiguous) views of the parameter and its slots, seen as rows of `width`
entries, and a gradient for some of those rows: g holds `rows.size` rows, g's row r updating row rows[r].
A dense gradient is one row spanning the whole parameter (rows = [0]); a SparseRows gradient is its values
and distinct, sorted indices. With `every_row` (Keras' rule, the default) the pass walks every row of the
parameter, reading the gradient's row where it has one and a row of zeros elsewhere: what a dense
zero-filled gradient gives, bit for bit, without building one; untouched rows' slots decay and momentum
keeps moving them. That row of zeros, `zeros`, comes from the caller (empty when every visited row is given):
an allocation inside the kernel cost 0.2 s more to compile (measured here), paid by every fresh environment. Without it (the lazy rule of TF's sparse apply ops and LazyAdam) the pass visits only
the rows given, and only they and their slots change. One loop body serves both, so a row gets bit for bit
what a dense update of that row gives, under either rule. sgd without momentum and adagrad have no
`every_row`: a zero gradient changes neither their weights nor their slots, so both rules are the lazy pass.

A slot an option adds (RMSprop's average gradient when centered and its momentum buffer, Adam's v_hat with
amsgrad) is None when the option is off, not a flag beside an empty array: Numba prunes an `is None` branch
on an argument before typing, so a run compiles only the update it uses (RMSprop 0.36 -> 0.26 s on an empty
cache, benchmarks/compile_time.py).

error_model="numpy" drops the zero check that Python semantics put on every division: that branch kept
LLVM from vectorizing the loop (8x slower measured). Plain IEEE arithmetic (no fastmath), so the numbers
follow the formulas exactly. `grad_scale` applies clipnorm (computed by the caller, which needs a norm
before the pass); `clip_value` <= 0 means no clipvalue. Formulas follow Keras 3.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always", no_cfunc_wrapper=True)
def _width(g: np.ndarray, rows: np.ndarray) -> np.uint64:
    """Entries per row: g holds rows.size rows.

    Indices are unsigned: a signed one gets a negative-index wraparound branch, which kept LLVM from
    vectorizing the loops (6x slower measured). The caller checks that rows lie inside the parameter.
    Every index stays uint64: Numba types uint64 mixed with int64 as float64.
    """
    return np.uint64(g.size // rows.size if rows.size > 0 else 0)


@numba.njit(cache=True, inline="always", no_cfunc_wrapper=True)
def _pass_shape(w: np.ndarray, g: np.ndarray, rows: np.ndarray, every_row: bool) -> tuple[np.uint64, np.uint64]:
    """(entries per row, rows the pass visits): all of w's rows under Keras' rule, the gradient's under lazy.

    A gradient of no rows under Keras' rule is a zero gradient over the whole parameter: one row of w.size.
    """
    if not every_row or w.size == 0:
        return _width(g, rows), np.uint64(rows.size)
    if rows.size == 0:
        return np.uint64(w.size), np.uint64(1)
    width = _width(g, rows)
    return width, np.uint64(w.size) // width


@numba.njit(cache=True, inline="always", error_model="numpy", no_cfunc_wrapper=True)
def _clipped(g: float, grad_scale: np.float32, clip_value: np.float32) -> np.float32:
    g = np.float32(g) * grad_scale
    if clip_value > 0.0:
        if g > clip_value:
            g = clip_value
        elif g < -clip_value:
            g = -clip_value
    return g


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def sgd_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, lr: float, grad_scale: float,
               clip_value: float) -> None:
    """w -= lr * g, on the rows given."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32 = np.float32(lr)
    width = _width(g, rows)
    for r in range(rows.size):
        w_row, g_row = np.uint64(rows[r]) * width, np.uint64(r) * width
        for j in range(width):
            i = w_row + j
            w[i] -= lr32 * _clipped(g[g_row + j], gs32, cv32)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def sgd_momentum_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, zeros: np.ndarray, velocity: np.ndarray,
                        lr: float, momentum: float, nesterov: bool, every_row: bool, grad_scale: float,
                        clip_value: float) -> None:
    """v = m v - lr g; w += v (nesterov: w += m v - lr g)."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32, m32 = np.float32(lr), np.float32(momentum)
    width, visited = _pass_shape(w, g, rows, every_row)
    given = np.uint64(0)
    for step in range(visited):
        row = step if every_row else np.uint64(rows[step])
        if given < rows.size and np.uint64(rows[given]) == row:
            source, at, given = g, given * width, given + np.uint64(1)
        else:
            source, at = zeros, np.uint64(0)
        w_row = row * width
        for j in range(width):
            i = w_row + j
            gi = _clipped(source[at + j], gs32, cv32)
            v = m32 * velocity[i] - lr32 * gi
            velocity[i] = v
            if nesterov:
                w[i] += m32 * v - lr32 * gi
            else:
                w[i] += v


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def rmsprop_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, zeros: np.ndarray, velocity: np.ndarray,
                   average_grad: np.ndarray | None, momentum_buffer: np.ndarray | None, lr: float, rho: float,
                   momentum: float, epsilon: float, every_row: bool, grad_scale: float, clip_value: float) -> None:
    """v = rho v + (1-rho) g^2; w -= lr g / sqrt(v [- avg_g^2] + eps), through a momentum buffer if momentum > 0.

    average_grad is None unless centered, momentum_buffer None without momentum."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32, rho32, m32, eps32 = np.float32(lr), np.float32(rho), np.float32(momentum), np.float32(epsilon)
    one_minus_rho = np.float32(1.0) - rho32
    width, visited = _pass_shape(w, g, rows, every_row)
    given = np.uint64(0)
    for step in range(visited):
        row = step if every_row else np.uint64(rows[step])
        if given < rows.size and np.uint64(rows[given]) == row:
            source, at, given = g, given * width, given + np.uint64(1)
        else:
            source, at = zeros, np.uint64(0)
        w_row = row * width
        for j in range(width):
            i = w_row + j
            gi = _clipped(source[at + j], gs32, cv32)
            v = rho32 * velocity[i] + one_minus_rho * gi * gi
            velocity[i] = v
            denominator = v + eps32
            if average_grad is not None:  # centered
                a = rho32 * average_grad[i] + one_minus_rho * gi
                average_grad[i] = a
                denominator = v - a * a + eps32
            increment = lr32 * gi / np.sqrt(denominator)
            if momentum_buffer is not None and m32 > 0:  # a cycled momentum can be 0 at some steps
                mb = m32 * momentum_buffer[i] + increment
                momentum_buffer[i] = mb
                w[i] -= mb
            else:
                w[i] -= increment


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def adagrad_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, accumulator: np.ndarray, lr: float,
                   epsilon: float, grad_scale: float, clip_value: float) -> None:
    """acc += g^2; w -= lr g / sqrt(acc + eps), on the rows given."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32, eps32 = np.float32(lr), np.float32(epsilon)
    width = _width(g, rows)
    for r in range(rows.size):
        w_row, g_row = np.uint64(rows[r]) * width, np.uint64(r) * width
        for j in range(width):
            i = w_row + j
            gi = _clipped(g[g_row + j], gs32, cv32)
            acc = accumulator[i] + gi * gi
            accumulator[i] = acc
            w[i] -= lr32 * gi / np.sqrt(acc + eps32)


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def adam_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, zeros: np.ndarray, m: np.ndarray, v: np.ndarray,
                v_hat: np.ndarray | None, alpha: float, beta_1: float, beta_2: float, epsilon: float,
                every_row: bool, grad_scale: float, clip_value: float) -> None:
    """m += (g - m)(1-b1); v += (g^2 - v)(1-b2); w -= alpha m / (sqrt(v or max v) + eps), alpha bias-corrected;
    v_hat (the max v) is None unless amsgrad."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    a32, eps32 = np.float32(alpha), np.float32(epsilon)
    c1, c2 = np.float32(1.0 - beta_1), np.float32(1.0 - beta_2)
    width, visited = _pass_shape(w, g, rows, every_row)
    given = np.uint64(0)
    for step in range(visited):
        row = step if every_row else np.uint64(rows[step])
        if given < rows.size and np.uint64(rows[given]) == row:
            source, at, given = g, given * width, given + np.uint64(1)
        else:
            source, at = zeros, np.uint64(0)
        w_row = row * width
        for j in range(width):
            i = w_row + j
            gi = _clipped(source[at + j], gs32, cv32)
            mi = m[i] + (gi - m[i]) * c1
            vi = v[i] + (gi * gi - v[i]) * c2
            m[i] = mi
            v[i] = vi
            if v_hat is not None:  # amsgrad
                if vi < v_hat[i]:
                    vi = v_hat[i]
                v_hat[i] = vi
            w[i] -= a32 * mi / (np.sqrt(vi) + eps32)
