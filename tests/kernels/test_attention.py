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
