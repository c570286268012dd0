"""Scaled dot-product attention over several heads at once: batched matrix products and a masked softmax."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class DotProductAttention(Op):
    """softmax(q k^T * scale, masked) v for every head of every example, as two batched matrix products.

    q is (batch, queries, heads, key_dim), k (batch, keys, heads, key_dim) and v (batch, keys, heads,
    value_dim): Keras' projected layout. Two outputs: the attention output (batch, queries, heads, value_dim)
    and the probabilities (batch, heads, queries, keys), Keras' attention scores, each with its own gradient.
    As in Keras, q is scaled before the product, and dropout (a keep-mask of 0 or 1 / (1 - rate) drawn by the
    caller) applies to the probabilities that weigh v, not to the scores returned. The mask (1 or batch,
    queries, keys) is True where a query may attend to a key; a query with no key gets zeros.
    """

    def __init__(self, scale: float, mask: Array | None = None, keep: Array | None = None) -> None:
        self.scale, self.mask, self.keep = scale, mask, keep

    def forward(self, q: Array, k: Array, v: Array) -> tuple[Array, Array]:
        from dlcli.kernels import attention as kernels  # here, so `dlcli --help` loads no numba

        self.q = np.swapaxes(q, 1, 2) * np.asarray(self.scale, q.dtype)  # (batch, heads, queries, key_dim)
        self.k = k.transpose(0, 2, 3, 1)  # (batch, heads, key_dim, keys)
        self.v = np.swapaxes(v, 1, 2)  # (batch, heads, keys, value_dim)
        scores = np.ascontiguousarray(self.q @ self.k)
        self.probabilities = np.empty_like(scores)
        mask = _NO_MASK if self.mask is None else np.ascontiguousarray(self.mask, bool)
        kernels.masked_softmax(scores, mask, self.mask is not None, self.probabilities)
        self.weights = self.probabilities if self.keep is None else self.probabilities * self.keep
        out = self.weights @ self.v  # (batch, heads, queries, value_dim)
        return np.swapaxes(out, 1, 2), self.probabilities

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None
                 ) -> tuple[Array | None, Array | None, Array | None]:
        from dlcli.kernels import attention as kernels

        d_weights = np.zeros_like(self.probabilities)
        d_v = None
        if d_out is not None:
            d_out = np.swapaxes(d_out, 1, 2)  # (batch, heads, queries, value_dim)
            d_weights = d_out @ np.swapaxes(self.v, -1, -2)
            if self.needs_grad[2]:
                d_v = np.swapaxes(np.swapaxes(self.weights, -1, -2) @ d_out, 1, 2)
        if self.keep is not None:
            d_weights *= self.keep
        if d_probabilities is not None:
            d_weights += d_probabilities
        d_scores = np.empty_like(self.probabilities)
        kernels.softmax_backward(self.probabilities, np.ascontiguousarray(d_weights), d_scores)
        d_q = np.swapaxes(d_scores @ np.swapaxes(self.k, -1, -2), 1, 2) * np.asarray(self.scale, d_scores.dtype) \
            if self.needs_grad[0] else None
        d_k = (np.swapaxes(self.q, -1, -2) @ d_scores).transpose(0, 3, 1, 2) if self.needs_grad[1] else None
        return d_q, d_k, d_v


_NO_MASK = np.ones((1, 1, 1), bool)  # stands in for "no mask" (the kernel reads has_mask first)


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, mask: np.ndarray | None = None,
                          keep: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """(attention output (batch, queries, heads, value_dim), probabilities (batch, heads, queries, keys)).

    q (batch, queries, heads, key_dim), k (batch, keys, heads, key_dim), v (batch, keys, heads, value_dim);
    `mask` (1 or batch, queries, keys) True where a query may attend to a key; `keep` a dropout keep-mask on
    the probabilities (batch, heads, queries, keys).
    """
    return DotProductAttention.apply(q, k, v, scale=scale, mask=mask, keep=keep)
