"""The recurrent kernels against plain NumPy loops of themselves, in float64 and float32."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from dlcli.kernels import blas, gru, lstm, recurrent
from dlcli.kernels.recurrent import LINEAR, RELU, SIGMOID, TANH

N, T, F, U = 3, 6, 2, 4
MASK = np.array([[True] * 6, [True, True, True, True, False, False], [False, True, True, False, True, True]])


def act(v: np.ndarray, code: int) -> np.ndarray:
    return {LINEAR: v, RELU: np.maximum(v, 0), TANH: np.tanh(v), SIGMOID: 1 / (1 + np.exp(-v))}[code]


def slope(y: np.ndarray, code: int) -> np.ndarray:
    return {LINEAR: np.ones_like(y), RELU: (y > 0) * 1.0, TANH: 1 - y * y, SIGMOID: y * (1 - y)}[code]


def product(h: np.ndarray, kernel: np.ndarray, dropout: np.ndarray) -> np.ndarray:
    """h @ kernel, with h masked per gate block when there is recurrent dropout."""
    if not len(dropout):
        return h @ kernel
    return np.concatenate([(h * dropout[g]) @ kernel[:, g * U:(g + 1) * U] for g in range(kernel.shape[1] // U)], 1)


def product_grad(d: np.ndarray, kernel: np.ndarray, dropout: np.ndarray) -> np.ndarray:
    if not len(dropout):
        return d @ kernel.T
    return sum((d[:, g * U:(g + 1) * U] @ kernel[:, g * U:(g + 1) * U].T) * dropout[g]
               for g in range(kernel.shape[1] // U))


def order(reverse: bool, backward: bool = False) -> range:
    """Times in the order a pass visits them."""
    return range(T - 1, -1, -1) if reverse != backward else range(T)


def slot(t: int, reverse: bool) -> tuple[int, int]:
    return (t + 1, t) if reverse else (t, t + 1)


def lstm_reference(xw, kernel, dropout, reverse, a, ra):
    hs, cs = np.zeros((T + 1, N, U)), np.zeros((T + 1, N, U))
    gates, act_c = np.zeros_like(xw), np.zeros((T, N, U))
    for t in order(reverse):
        prev, cur = slot(t, reverse)
        z = xw[t] + product(hs[prev], kernel, dropout)
        i, f, g, o = act(z[:, :U], ra), act(z[:, U:2 * U], ra), act(z[:, 2 * U:3 * U], a), act(z[:, 3 * U:], ra)
        gates[t] = np.concatenate([i, f, g, o], 1)
        c = f * cs[prev] + i * g
        act_c[t] = act(c, a)
        m = MASK[:, t, None]
        hs[cur], cs[cur] = np.where(m, o * act_c[t], hs[prev]), np.where(m, c, cs[prev])
    return hs, cs, gates, act_c


def lstm_backward_reference(d_hs, kernel, dropout, reverse, a, ra, gates, cs, act_c):
    dh, dc, dz = np.zeros((N, U)), np.zeros((N, U)), np.zeros((T, N, 4 * U))
    for t in order(reverse, backward=True):
        dh = dh + d_hs[t]
        i, f, g, o = np.split(gates[t], 4, axis=1)
        dct = dc + dh * o * slope(act_c[t], a)
        d = np.concatenate([dct * g * slope(i, ra), dct * cs[slot(t, reverse)[0]] * slope(f, ra),
                            dct * i * slope(g, a), dh * act_c[t] * slope(o, ra)], 1)
        m = MASK[:, t, None]
        dz[t] = np.where(m, d, 0)
        dc = np.where(m, dct * f, dc)
        dh = np.where(m, product_grad(dz[t], kernel, dropout), dh)
    return dz


def gru_reference(xw, kernel, dropout, bias_h, reverse, reset_after, a, ra):
    hs, gates, saved = np.zeros((T + 1, N, U)), np.zeros_like(xw), np.zeros((T, N, U))
    for t in order(reverse):
        prev, cur = slot(t, reverse)
        hp = hs[prev]
        inner = 3 * U if reset_after else 2 * U
        zr = product(hp, kernel[:, :inner], dropout) + bias_h[:inner]
        z, r = act(xw[t, :, :U] + zr[:, :U], ra), act(xw[t, :, U:2 * U] + zr[:, U:2 * U], ra)
        if reset_after:
            saved[t] = zr[:, 2 * U:]
            cand = act(xw[t, :, 2 * U:] + r * saved[t], a)
        else:
            saved[t] = r * hp * (dropout[2] if len(dropout) else 1)
            cand = act(xw[t, :, 2 * U:] + saved[t] @ kernel[:, 2 * U:], a)
        gates[t] = np.concatenate([z, r, cand], 1)
        hs[cur] = np.where(MASK[:, t, None], z * hp + (1 - z) * cand, hp)
    return hs, gates, saved


def gru_backward_reference(d_hs, kernel, dropout, reverse, reset_after, a, ra, hs, gates, saved):
    dh, d_in = np.zeros((N, U)), np.zeros((T, N, 3 * U))
    d_rec = np.zeros((T, N, 3 * U if reset_after else 2 * U))
    for t in order(reverse, backward=True):
        dh = dh + d_hs[t]
        hp = hs[slot(t, reverse)[0]]
        z, r, cand = np.split(gates[t], 3, axis=1)
        d_cand = dh * (1 - z) * slope(cand, a)
        d_z = dh * (hp - cand) * slope(z, ra)
        direct = dh * z
        if reset_after:
            d_r = d_cand * saved[t] * slope(r, ra)
            rec = np.concatenate([d_z, d_r, d_cand * r], 1)
        else:
            d_reset = (d_cand @ kernel[:, 2 * U:].T) * (dropout[2] if len(dropout) else 1)
            d_r = d_reset * hp * slope(r, ra)
            direct = direct + d_reset * r
            rec = np.concatenate([d_z, d_r], 1)
        m = MASK[:, t, None]
        d_in[t] = np.where(m, np.concatenate([d_z, d_r, d_cand], 1), 0)
        d_rec[t] = np.where(m, rec, 0)
        dh = np.where(m, product_grad(d_rec[t], kernel if reset_after else kernel[:, :2 * U], dropout) + direct, dh)
    return d_in, d_rec


def _loop(kernel: np.ndarray, dropout: np.ndarray, transposed: bool = False):
    """The kernels' (kernel, blocks, dropout) arguments, as dlcli.ops.recurrent builds them: blocks and dropout
    None without recurrent dropout."""
    cast = np.ascontiguousarray(kernel.T if transposed else kernel)
    if not len(dropout):
        return cast, None, None
    blocks = kernel.reshape(U, -1, U).transpose((1, 2, 0) if transposed else (1, 0, 2))
    return cast, np.ascontiguousarray(blocks, kernel.dtype), dropout


def _data(dtype: type, width: int, dropout: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    xw = rng.normal(size=(T, N, width)).astype(dtype)
    kernel = (rng.normal(size=(U, width)) * 0.5).astype(dtype)
    drop = ((rng.random((width // U, N, U)) > 0.3) / 0.7).astype(dtype) if dropout else np.empty((0, N, U), dtype)
    d_hs = rng.normal(size=(T, N, U)).astype(dtype)
    return xw, kernel, drop, d_hs


PARAMS = [(np.float64, False, False, TANH, SIGMOID), (np.float64, True, True, RELU, TANH),
          (np.float32, False, True, TANH, SIGMOID), (np.float32, True, False, SIGMOID, LINEAR)]


def close(got: np.ndarray, want: np.ndarray, dtype: type) -> None:
    """Equal up to rounding: float32 rounding scales with the largest value in play."""
    scale = max(1.0, float(np.abs(want).max()))
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * scale)


def _bias(width: int, dtype: type) -> np.ndarray:
    return np.linspace(-0.4, 0.4, width).astype(dtype)


def _state_grads(dtype: type, count: int) -> list[np.ndarray]:
    """(N, U) arrays for the state arguments after dz: lstm's dc_last (zeros), d_first and dc_first (3);
    the others' d_first (1)."""
    return [np.zeros((N, U), dtype) for _ in range(count)]


def _check_bias_sum(d_bias: np.ndarray, d: np.ndarray) -> None:
    """The kernels sum the bias gradient as they go, in float64."""
    np.testing.assert_allclose(d_bias, d.astype(np.float64).sum(axis=(0, 1)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype,reverse,dropout,a,ra", PARAMS)
def test_lstm_kernels_match_numpy(dtype, reverse, dropout, a, ra) -> None:
    xw, kernel, drop, d_hs = _data(dtype, 4 * U, dropout)
    hs, cs = np.zeros((T + 1, N, U), dtype), np.zeros((T + 1, N, U), dtype)  # the initial states: zeros
    gates, act_c, bias = xw.copy(), np.empty((T, N, U), dtype), _bias(4 * U, dtype)
    lstm.lstm_forward(gates, bias, *_loop(kernel, drop), MASK, reverse, a, ra, hs, cs, act_c)
    expected = lstm_reference(xw.astype(np.float64) + bias, kernel, drop, reverse, a, ra)
    for got, want in zip((hs, cs, gates, act_c), expected):
        close(got, want, dtype)
    dz, d_bias = np.empty_like(gates), np.empty_like(bias)
    lstm.lstm_backward(d_hs, np.zeros((N, U), dtype), *_loop(kernel, drop, True), MASK, reverse, a, ra, gates,
                       cs, act_c, dz, *_state_grads(dtype, 3), d_bias)
    want = lstm_backward_reference(d_hs, kernel, drop, reverse, a, ra, gates.astype(np.float64), cs, act_c)
    close(dz, want, dtype)
    _check_bias_sum(d_bias, dz)


@pytest.mark.parametrize("dtype,reverse,dropout,a,ra", PARAMS)
def test_simple_rnn_kernels_match_numpy(dtype, reverse, dropout, a, ra) -> None:
    xw, kernel, drop, d_hs = _data(dtype, U, dropout)
    hs, bias = np.zeros((T + 1, N, U), dtype), _bias(U, dtype)
    recurrent.simple_rnn_forward(xw, bias, *_loop(kernel, drop), MASK, reverse, a, hs)
    want = np.zeros((T + 1, N, U))
    for t in order(reverse):
        prev, cur = slot(t, reverse)
        step = act(xw[t] + bias + product(want[prev], kernel, drop), a)
        want[cur] = np.where(MASK[:, t, None], step, want[prev])
    close(hs, want, dtype)
    dz, d_bias = np.empty_like(d_hs), np.empty_like(bias)
    recurrent.simple_rnn_backward(d_hs, np.zeros((N, U), dtype), *_loop(kernel, drop, True), MASK, reverse, a, hs,
                                  dz, *_state_grads(dtype, 1), d_bias)
    dh, want_dz = np.zeros((N, U)), np.zeros((T, N, U))
    for t in order(reverse, backward=True):
        dh = dh + d_hs[t]
        want_dz[t] = np.where(MASK[:, t, None], dh * slope(hs[slot(t, reverse)[1]].astype(np.float64), a), 0)
        dh = np.where(MASK[:, t, None], product_grad(want_dz[t], kernel, drop), dh)
    close(dz, want_dz, dtype)
    _check_bias_sum(d_bias, dz)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dtype,reverse,dropout,a,ra", PARAMS)
def test_gru_kernels_match_numpy(reset_after, dtype, reverse, dropout, a, ra) -> None:
    xw, kernel, drop, d_hs = _data(dtype, 3 * U, dropout)
    bias_x, bias_h = _bias(3 * U, dtype), (np.linspace(-0.3, 0.3, 3 * U) * reset_after).astype(dtype)
    hs, saved, gates = np.zeros((T + 1, N, U), dtype), np.empty((T, N, U), dtype), xw.copy()
    inner = kernel if reset_after else np.ascontiguousarray(kernel[:, :2 * U])
    kernel_h = None if reset_after else np.ascontiguousarray(kernel[:, 2 * U:])  # None selects reset_after
    loop = _loop(inner, drop)
    gru.gru_forward(gates, bias_x, *loop, kernel_h, bias_h, MASK, reverse, a, ra, hs, saved)
    expected = gru_reference(xw.astype(np.float64) + bias_x, kernel, drop, bias_h, reverse, reset_after, a, ra)
    for got, want in zip((hs, gates, saved), expected):
        close(got, want, dtype)
    d_in, d_rec = np.empty_like(gates), np.empty((T, N, inner.shape[1]), dtype)
    d_bias_x, d_bias_h = np.empty(3 * U, dtype), np.empty(inner.shape[1], dtype)
    kernel_h_t = None if reset_after else np.ascontiguousarray(kernel_h.T)
    gru.gru_backward(d_hs, np.zeros((N, U), dtype), *_loop(inner, drop, True), kernel_h_t, MASK, reverse, a, ra, hs,
                     gates, saved, d_in, d_rec, *_state_grads(dtype, 1), d_bias_x, d_bias_h)
    want_in, want_rec = gru_backward_reference(d_hs, kernel, drop, reverse, reset_after, a, ra, hs, gates, saved)
    close(d_in, want_in, dtype)
    close(d_rec, want_rec, dtype)
    _check_bias_sum(d_bias_x, d_in)
    _check_bias_sum(d_bias_h, d_rec)


def _run_every_family(mask: np.ndarray | None) -> list[np.ndarray]:
    """Forward and backward of simple_rnn, lstm and gru (reset_after) on one float32 batch: every output."""
    f32, out = np.float32, []
    xw, kernel, drop, d_hs = _data(f32, U, False, seed=3)
    hs, dz, d_bias = np.zeros((T + 1, N, U), f32), np.empty((T, N, U), f32), np.empty(U, f32)
    recurrent.simple_rnn_forward(xw, _bias(U, f32), *_loop(kernel, drop), mask, False, TANH, hs)
    recurrent.simple_rnn_backward(d_hs, np.zeros((N, U), f32), *_loop(kernel, drop, True), mask, False, TANH, hs,
                                  dz, *_state_grads(f32, 1), d_bias)
    out += [hs, dz, d_bias]
    xw, kernel, drop, d_hs = _data(f32, 4 * U, False, seed=4)
    hs, cs, act_c, dz = (np.zeros((T + 1, N, U), f32), np.zeros((T + 1, N, U), f32), np.empty((T, N, U), f32),
                         np.empty((T, N, 4 * U), f32))
    lstm.lstm_forward(xw, _bias(4 * U, f32), *_loop(kernel, drop), mask, False, TANH, SIGMOID, hs, cs, act_c)
    d_bias = np.empty(4 * U, f32)
    lstm.lstm_backward(d_hs, np.zeros((N, U), f32), *_loop(kernel, drop, True), mask, False, TANH, SIGMOID, xw, cs,
                       act_c, dz, *_state_grads(f32, 3), d_bias)
    out += [hs, cs, dz, d_bias]
    xw, kernel, drop, d_hs = _data(f32, 3 * U, False, seed=5)
    hs, saved = np.zeros((T + 1, N, U), f32), np.empty((T, N, U), f32)
    gru.gru_forward(xw, _bias(3 * U, f32), *_loop(kernel, drop), None, _bias(3 * U, f32), mask, False, TANH, SIGMOID,
                    hs, saved)
    d_in, d_rec, sums = np.empty((T, N, 3 * U), f32), np.empty((T, N, 3 * U), f32), np.empty((2, 3 * U), f32)
    gru.gru_backward(d_hs, np.zeros((N, U), f32), *_loop(kernel, drop, True), None, mask, False, TANH, SIGMOID, hs,
                     xw, saved, d_in, d_rec, *_state_grads(f32, 1), sums[0], sums[1])
    return out + [hs, saved, d_in, d_rec, sums]


def test_no_step_mask_is_a_mask_of_every_step() -> None:
    # ops pass None without masking, so the kernels compile without the carrying of masked steps
    for without, every in zip(_run_every_family(None), _run_every_family(np.ones((N, T), bool)), strict=True):
        np.testing.assert_array_equal(without, every)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_gradient_on_the_final_state_alone_equals_one_on_the_last_step(reverse: bool) -> None:
    xw, kernel, drop, d_hs = _data(np.float64, 4 * U, False)
    hs, cs, gates, act_c = np.zeros((T + 1, N, U)), np.zeros((T + 1, N, U)), xw.copy(), np.empty((T, N, U))
    loop = _loop(kernel, drop)
    lstm.lstm_forward(gates, np.zeros(4 * U), *loop, MASK, reverse, TANH, SIGMOID, hs, cs, act_c)
    last = np.zeros_like(d_hs)
    last[0 if reverse else T - 1] = d_hs[0]
    grads = []
    for every_step, final in ((last, np.zeros((N, U))), (np.empty((0, N, U)), d_hs[0].copy())):
        dz, d_bias = np.empty_like(gates), np.empty(4 * U)
        lstm.lstm_backward(every_step, final, *_loop(kernel, drop, True), MASK, reverse, TANH, SIGMOID, gates, cs,
                           act_c, dz, *_state_grads(np.float64, 3), d_bias)
        grads.append(dz)
    np.testing.assert_array_equal(grads[0], grads[1])


# activate and slope_terms have no Python entry point (kernels/__init__.py): compiled code calls them here
@numba.njit(cache=True)
def _activate(z, add, bias, col0, col1, code):  # type: ignore[no-untyped-def]
    recurrent.activate(z, add, bias, col0, col1, code)


@numba.njit(cache=True)
def _slope_terms(code, like):  # type: ignore[no-untyped-def]
    return recurrent.slope_terms(code, like)


@pytest.mark.parametrize("code", [LINEAR, RELU, TANH, SIGMOID])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activate_and_slope_match_numpy(code: int, dtype: type) -> None:
    rng = np.random.default_rng(1)
    src, add, bias = (rng.normal(scale=2, size=shape).astype(dtype) for shape in ((5, 12), (5, 12), (12,)))
    out = src.copy()
    _activate(out, add, bias, 3, 9, code)
    assert (out[:, :3] == src[:, :3]).all() and (out[:, 9:] == src[:, 9:]).all()
    y = out[:, 3:9]
    close(y, act((src + add + bias)[:, 3:9].astype(np.float64), code), dtype)
    terms = _slope_terms(code, out)
    slopes = np.array([[recurrent.slope(v, terms) for v in row] for row in y])
    close(slopes, slope(y.astype(np.float64), code), dtype)


def test_float32_tanh_is_within_four_tenths_of_a_millionth_and_keeps_nan() -> None:
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan]])
    out = x.astype(np.float32).reshape(1, -1)
    _activate(out, np.zeros_like(out), np.zeros(out.shape[1], np.float32), 0, out.shape[1], TANH)
    exact = np.tanh(x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(out[0, :-1], exact[:-1], rtol=0, atol=4e-7)
    assert np.isnan(out[0, -1]) and np.abs(out[0, :-1]).max() <= 1.0
    assert out[0, -3] == 1.0 and out[0, -2] == -1.0


def test_blas_one_thread_restores_the_thread_count() -> None:
    controls = blas._CONTROLS
    assert controls is not None, "SciPy's OpenBLAS was not found: per-step GEMMs would run multithreaded"
    get, set_ = controls
    before = get()
    with blas.one_thread():
        assert get() == 1
    assert get() == before


@pytest.mark.parametrize("cell", ["lstm", "simple_rnn"])
def test_blocks_of_rows_on_several_threads_match_one_thread(cell: str) -> None:
    """The time loops split the batch rows into one block per thread: the result does not depend on the split."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread: nothing to split")
    width = 4 * U if cell == "lstm" else U
    xw, kernel, drop, d_hs = _data(np.float32, width, False, seed=3)
    bias, results = _bias(width, np.float32), []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            hs, dz, d_bias = np.empty((T + 1, N, U), np.float32), np.empty_like(xw), np.empty(width, np.float32)
            hs[0] = np.random.default_rng(5).normal(size=(N, U))  # an initial state given by another layer
            firsts = [np.empty((N, U), np.float32) for _ in range(2)]
            with blas.one_thread():
                if cell == "lstm":
                    gates, cs, act_c = xw.copy(), np.empty_like(hs), np.empty((T, N, U), np.float32)
                    cs[0] = np.random.default_rng(6).normal(size=(N, U))
                    lstm.lstm_forward(gates, bias, *_loop(kernel, drop), MASK, False, TANH, SIGMOID, hs, cs,
                                      act_c)
                    lstm.lstm_backward(d_hs, np.zeros((N, U), np.float32), *_loop(kernel, drop, True), MASK,
                                       False, TANH, SIGMOID, gates, cs, act_c, dz, d_hs[0], *firsts, d_bias)
                else:
                    recurrent.simple_rnn_forward(xw, bias, *_loop(kernel, drop), MASK, False, TANH, hs)
                    recurrent.simple_rnn_backward(d_hs, np.zeros((N, U), np.float32), *_loop(kernel, drop, True),
                                                  MASK, False, TANH, hs, dz, firsts[0], d_bias)
            results.append((hs, dz, d_bias, *firsts[:2 if cell == "lstm" else 1]))
    finally:
        numba.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, rtol=1e-6, atol=1e-7)
