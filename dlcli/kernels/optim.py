"""Fused optimizer updates: one in-place pass over a parameter, its gradient and its state, no temporaries.

Each kernel takes flat (1-D, contiguous) views of the parameter and its slots, seen as rows of `width`
entries, and a gradient for some of those rows: g holds `rows.size` rows, g's row r updating row rows[r].
A dense gradient is one row spanning the whole parameter (rows = [0]); a SparseRows gradient is its values
and distinct, sorted indices. With `every_row` (Keras' rule, the default), the rows the gradient skips get
the update of a zero gradient in the same pass, as a dense zero-filled gradient would give them but without
building one: their slots decay and momentum keeps moving them. Without it (the lazy rule of TF's sparse
apply ops and LazyAdam) only the rows given, and their slots, change. Every entry goes through one formula
function, so a row gets bit for bit what a dense update of that row gives, under either rule.

error_model="numpy" drops the zero check that Python semantics put on every division: that branch kept
LLVM from vectorizing the loop (8x slower measured). Plain IEEE arithmetic (no fastmath), so the numbers
follow the formulas exactly. `grad_scale` applies clipnorm (computed by the caller, which needs a norm
before the pass); `clip_value` <= 0 means no clipvalue. Formulas follow Keras 3.
"""

from __future__ import annotations

import numba
import numpy as np

_ZERO = np.float32(0.0)


@numba.njit(cache=True, inline="always")
def _width(g: np.ndarray, rows: np.ndarray) -> np.uint64:
    """Entries per row: g holds rows.size rows.

    Indices are unsigned: a signed one gets a negative-index wraparound branch, which kept LLVM from
    vectorizing the loops (6x slower measured). The caller checks that rows lie inside the parameter.
    """
    return np.uint64(g.size // rows.size if rows.size > 0 else 0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _clipped(g: float, grad_scale: np.float32, clip_value: np.float32) -> np.float32:
    g = np.float32(g) * grad_scale
    if clip_value > 0.0:
        if g > clip_value:
            g = clip_value
        elif g < -clip_value:
            g = -clip_value
    return g


@numba.njit(cache=True, inline="always", error_model="numpy")
def _sgd_momentum_entry(w: np.ndarray, velocity: np.ndarray, i: np.uint64, gi: np.float32, lr32: np.float32,
                        m32: np.float32, nesterov: bool) -> None:
    v = m32 * velocity[i] - lr32 * gi
    velocity[i] = v
    if nesterov:
        w[i] += m32 * v - lr32 * gi
    else:
        w[i] += v


@numba.njit(cache=True, error_model="numpy")
def sgd_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, lr: float, grad_scale: float,
               clip_value: float) -> None:
    """w -= lr * g, on the rows given only: a zero gradient leaves a row where it is, so both rules agree."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32 = np.float32(lr)
    width = _width(g, rows)
    for r in range(rows.size):
        w_row, g_row = np.uint64(rows[r]) * width, np.uint64(r) * width
        for j in range(width):
            i = w_row + j
            w[i] -= lr32 * _clipped(g[g_row + j], gs32, cv32)


@numba.njit(cache=True, error_model="numpy")
def sgd_momentum_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, velocity: np.ndarray, lr: float,
                        momentum: float, nesterov: bool, every_row: bool, grad_scale: float,
                        clip_value: float) -> None:
    """v = m v - lr g; w += v (nesterov: w += m v - lr g)."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32, m32 = np.float32(lr), np.float32(momentum)
    width = _width(g, rows)
    done = np.uint64(0)  # entries before this one are updated
    for r in range(rows.size):
        start, g_row = np.uint64(rows[r]) * width, np.uint64(r) * width
        if every_row:
            for i in range(done, start):
                _sgd_momentum_entry(w, velocity, i, _ZERO, lr32, m32, nesterov)
        for j in range(width):
            _sgd_momentum_entry(w, velocity, start + j, _clipped(g[g_row + j], gs32, cv32), lr32, m32, nesterov)
        done = start + width
    if every_row:
        for i in range(done, np.uint64(w.size)):
            _sgd_momentum_entry(w, velocity, i, _ZERO, lr32, m32, nesterov)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _rmsprop_entry(w: np.ndarray, velocity: np.ndarray, average_grad: np.ndarray, momentum_buffer: np.ndarray,
                   i: np.uint64, gi: np.float32, lr32: np.float32, rho32: np.float32, one_minus_rho: np.float32,
                   m32: np.float32, eps32: np.float32, centered: bool) -> None:
    v = rho32 * velocity[i] + one_minus_rho * gi * gi
    velocity[i] = v
    denominator = v + eps32
    if centered:
        a = rho32 * average_grad[i] + one_minus_rho * gi
        average_grad[i] = a
        denominator = v - a * a + eps32
    increment = lr32 * gi / np.sqrt(denominator)
    if m32 > 0:
        mb = m32 * momentum_buffer[i] + increment
        momentum_buffer[i] = mb
        w[i] -= mb
    else:
        w[i] -= increment


@numba.njit(cache=True, error_model="numpy")
def rmsprop_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, velocity: np.ndarray, average_grad: np.ndarray,
                   momentum_buffer: np.ndarray, lr: float, rho: float, momentum: float, epsilon: float,
                   centered: bool, every_row: bool, grad_scale: float, clip_value: float) -> None:
    """v = rho v + (1-rho) g^2; w -= lr g / sqrt(v [- avg_g^2] + eps), through a momentum buffer if momentum > 0."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    lr32, rho32, m32, eps32 = np.float32(lr), np.float32(rho), np.float32(momentum), np.float32(epsilon)
    one_minus_rho = np.float32(1.0) - rho32
    width = _width(g, rows)
    done = np.uint64(0)
    for r in range(rows.size):
        start, g_row = np.uint64(rows[r]) * width, np.uint64(r) * width
        if every_row:
            for i in range(done, start):
                _rmsprop_entry(w, velocity, average_grad, momentum_buffer, i, _ZERO, lr32, rho32, one_minus_rho,
                               m32, eps32, centered)
        for j in range(width):
            _rmsprop_entry(w, velocity, average_grad, momentum_buffer, start + j,
                           _clipped(g[g_row + j], gs32, cv32), lr32, rho32, one_minus_rho, m32, eps32, centered)
        done = start + width
    if every_row:
        for i in range(done, np.uint64(w.size)):
            _rmsprop_entry(w, velocity, average_grad, momentum_buffer, i, _ZERO, lr32, rho32, one_minus_rho, m32,
                           eps32, centered)


@numba.njit(cache=True, error_model="numpy")
def adagrad_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, accumulator: np.ndarray, lr: float,
                   epsilon: float, grad_scale: float, clip_value: float) -> None:
    """acc += g^2; w -= lr g / sqrt(acc + eps), on the rows given only: a zero gradient changes neither."""
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


@numba.njit(cache=True, inline="always", error_model="numpy")
def _adam_entry(w: np.ndarray, m: np.ndarray, v: np.ndarray, v_hat: np.ndarray, i: np.uint64, gi: np.float32,
                a32: np.float32, c1: np.float32, c2: np.float32, eps32: np.float32, amsgrad: bool) -> None:
    mi = m[i] + (gi - m[i]) * c1
    vi = v[i] + (gi * gi - v[i]) * c2
    m[i] = mi
    v[i] = vi
    if amsgrad:
        if vi < v_hat[i]:
            vi = v_hat[i]
        v_hat[i] = vi
    w[i] -= a32 * mi / (np.sqrt(vi) + eps32)


@numba.njit(cache=True, error_model="numpy")
def adam_update(w: np.ndarray, g: np.ndarray, rows: np.ndarray, m: np.ndarray, v: np.ndarray, v_hat: np.ndarray,
                alpha: float, beta_1: float, beta_2: float, epsilon: float, amsgrad: bool, every_row: bool,
                grad_scale: float, clip_value: float) -> None:
    """m += (g - m)(1-b1); v += (g^2 - v)(1-b2); w -= alpha m / (sqrt(v or max v) + eps), alpha bias-corrected."""
    gs32, cv32 = np.float32(grad_scale), np.float32(clip_value)
    a32, eps32 = np.float32(alpha), np.float32(epsilon)
    c1, c2 = np.float32(1.0 - beta_1), np.float32(1.0 - beta_2)
    width = _width(g, rows)
    done = np.uint64(0)
    for r in range(rows.size):
        start, g_row = np.uint64(rows[r]) * width, np.uint64(r) * width
        if every_row:
            for i in range(done, start):
                _adam_entry(w, m, v, v_hat, i, _ZERO, a32, c1, c2, eps32, amsgrad)
        for j in range(width):
            _adam_entry(w, m, v, v_hat, start + j, _clipped(g[g_row + j], gs32, cv32), a32, c1, c2, eps32, amsgrad)
        done = start + width
    if every_row:
        for i in range(done, np.uint64(w.size)):
            _adam_entry(w, m, v, v_hat, i, _ZERO, a32, c1, c2, eps32, amsgrad)
