"""The attention kernels against plain NumPy: Keras' masked softmax (where, softmax, where) and its backward."""

from __future__ import annotations

import numpy as np

from dlcli.kernels import attention as kernels

rng = np.random.default_rng(61)


def _keras_masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """keras.layers.Softmax with a mask, written out: -1e9 where masked, softmax, then zeros where masked."""
    filled = np.where(mask[:, None], scores, np.float32(-1e9))
    e = np.exp(filled - filled.max(axis=-1, keepdims=True))
    return np.where(mask[:, None], e / e.sum(axis=-1, keepdims=True), 0.0)


def test_masked_softmax_matches_keras_formula() -> None:
    scores = rng.normal(size=(3, 2, 4, 5)).astype(np.float32) * 4
    mask = rng.random((3, 4, 5)) > 0.4
    mask[1, 2] = False  # a query with no key: zeros, not a uniform row
    out = np.empty_like(scores)
    kernels.masked_softmax(scores, mask, True, out)
    np.testing.assert_allclose(out, _keras_masked_softmax(scores, mask), rtol=1e-6, atol=1e-7)
    assert (out[1, :, 2] == 0).all()
    shared = np.empty_like(scores)
    kernels.masked_softmax(scores, mask[:1], True, shared)  # one mask for every example
    np.testing.assert_allclose(shared, _keras_masked_softmax(scores, np.broadcast_to(mask[:1], mask.shape)),
                               rtol=1e-6, atol=1e-7)


def test_softmax_backward_matches_numpy() -> None:
    p = rng.random((2, 3, 4, 5))
    p /= p.sum(axis=-1, keepdims=True)
    d_p = rng.normal(size=p.shape)
    d_scores = np.empty_like(p)
    kernels.softmax_backward(p, d_p, d_scores)
    np.testing.assert_allclose(d_scores, p * (d_p - (d_p * p).sum(axis=-1, keepdims=True)), rtol=1e-12)


def test_mask_blocks_bound_each_examples_attended_pairs() -> None:
    mask = np.zeros((3, 4, 5), bool)
    mask[0, 1:3, 2:] = True
    mask[0, 2, 0] = True  # a hole-y mask: the block is its bounding box
    mask[2] = True
    blocks = kernels.mask_blocks(mask, 3, 4, 5)
    assert blocks.tolist() == [[1, 3, 0, 5], [0, 0, 0, 0], [0, 4, 0, 5]]
    assert kernels.mask_blocks(mask[:1], 2, 4, 5).tolist() == [[1, 3, 0, 5], [1, 3, 0, 5]]  # shared mask
    assert kernels.mask_blocks(None, 2, 4, 5).tolist() == [[0, 4, 0, 5]] * 2
    assert kernels.block_groups(blocks) == [(slice(0, 1), 1, 3, 0, 5), (slice(2, 3), 0, 4, 0, 5)]
    assert kernels.block_groups(kernels.mask_blocks(None, 2, 4, 5)) == [(slice(None), 0, 4, 0, 5)]


def test_blocked_softmax_and_its_backward_scale_and_write_zeros_outside_the_blocks() -> None:
    scores = rng.normal(size=(3, 2, 4, 5)).astype(np.float32) * 4
    mask = np.zeros((3, 4, 5), bool)
    mask[0, 1:, 1:4] = True
    mask[0, 2, 2] = False
    mask[2] = rng.random((4, 5)) > 0.3
    blocks = kernels.mask_blocks(mask, 3, 4, 5)
    scores_outside = scores.copy()
    scores_outside[0, :, 0] = np.nan  # outside the blocks scores are never read (the products skip them)
    scores_outside[1] = np.nan
    out = np.full_like(scores, 7.0)
    kernels.masked_softmax_blocks(scores_outside, mask, True, 0.5, blocks, out)
    expected = _keras_masked_softmax(scores * np.float32(0.5), mask)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert (out[1] == 0).all() and (out[0, :, 0] == 0).all() and (out[0, :, :, 4] == 0).all()
    d_p = rng.normal(size=scores.shape).astype(np.float32)
    d_scores = np.zeros_like(scores)
    kernels.softmax_block_backward(out, d_p, np.full(1, 0.5, np.float32), blocks, d_scores)
    expected_d = 0.5 * out * (d_p - (d_p * out).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(d_scores, expected_d, rtol=1e-5, atol=1e-7)


def test_softmax_and_backward_in_parts_on_threads_match_numpy() -> None:
    """Enough (batch, head) pairs of 64 x 64 scores that the kernels split them over the threads (parts.in_parts):
    every pair is computed once, whichever thread takes it."""
    import numba

    scores = rng.normal(size=(8, 4, 64, 64)).astype(np.float32) * 4
    mask = rng.random((8, 64, 64)) > 0.3
    assert 8 * 4 // kernels._pairs_per_part(64, 64) >= numba.get_num_threads()  # more parts than threads
    out = np.full_like(scores, 7.0)
    kernels.masked_softmax(scores, mask, True, out)
    np.testing.assert_allclose(out, _keras_masked_softmax(scores, mask), rtol=1e-6, atol=1e-7)
    d_p = rng.normal(size=scores.shape).astype(np.float32)
    d_scores = np.full_like(scores, 7.0)
    kernels.softmax_backward(out, d_p, d_scores)
    np.testing.assert_allclose(d_scores, out * (d_p - (d_p * out).sum(axis=-1, keepdims=True)), rtol=1e-5,
                               atol=1e-6)
