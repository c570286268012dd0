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
        return self._attend(q, k, v)

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None
                 ) -> tuple[Array | None, Array | None, Array | None]:
        return self._gradients(d_out, d_probabilities, *self.needs_grad)

    def _attend(self, q: Array, k: Array, v: Array) -> tuple[Array, Array]:
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

    def _gradients(self, d_out: Array | None, d_probabilities: Array | None, need_q: bool, need_k: bool,
                   need_v: bool, into: tuple[Array, Array, Array] | None = None
                   ) -> tuple[Array | None, Array | None, Array | None]:
        """(d_q, d_k, d_v) in the layout of q, k and v, each None where not needed; written into `into`'s three
        arrays when given (views of one packed gradient), so each is written once."""
        from dlcli.kernels import attention as kernels

        d_v = None
        if d_out is not None:
            d_out = np.swapaxes(d_out, 1, 2)  # (batch, heads, queries, value_dim)
            d_weights = d_out @ np.swapaxes(self.v, -1, -2)
            if need_v:
                d_v = _into(np.swapaxes(self.weights, -1, -2) @ d_out, (0, 2, 1, 3), into and into[2])
            if self.keep is not None:
                d_weights *= self.keep
            if d_probabilities is not None:
                d_weights += d_probabilities
        else:
            d_weights = d_probabilities
        d_scores = np.empty_like(self.probabilities)
        kernels.softmax_backward(self.probabilities, np.ascontiguousarray(d_weights, self.probabilities.dtype),
                                 d_scores)
        d_q = d_k = None
        if need_q:
            d_q_heads = d_scores @ np.swapaxes(self.k, -1, -2)
            d_q_heads *= np.asarray(self.scale, d_q_heads.dtype)
            d_q = _into(d_q_heads, (0, 2, 1, 3), into and into[0])
        if need_k:
            d_k = _into(np.swapaxes(self.q, -1, -2) @ d_scores, (0, 3, 1, 2), into and into[1])
        return d_q, d_k, d_v


def _into(heads_first: Array, axes: tuple[int, ...], out: Array | None) -> Array:
    """heads_first transposed by `axes` to the layout of q, k or v: written into `out` when given, else a view."""
    moved = heads_first.transpose(axes)
    if out is None:
        return moved
    out[...] = moved
    return out


class PackedSelfAttention(DotProductAttention):
    """DotProductAttention of one packed projection (batch, steps, heads * (2 key_dim + value_dim)), laid out
    [q | k | v] as one GEMM of the input by the three kernels side by side gives it (self-attention).

    q, k and v are views into it, and the backward writes their gradients into one array of its shape: no
    split or concatenation is copied.
    """

    def __init__(self, heads: int, key_dim: int, value_dim: int, scale: float, mask: Array | None = None,
                 keep: Array | None = None) -> None:
        super().__init__(scale, mask, keep)
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim

    def forward(self, qkv: Array) -> tuple[Array, Array]:  # type: ignore[override]
        batch, steps, _ = self.packed_shape = qkv.shape
        width = self.heads * self.key_dim
        q, k, v = qkv[..., :width], qkv[..., width:2 * width], qkv[..., 2 * width:]
        return self._attend(q.reshape(batch, steps, self.heads, -1), k.reshape(batch, steps, self.heads, -1),
                            v.reshape(batch, steps, self.heads, -1))

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None) -> tuple[Array]:  # type: ignore
        batch, steps, _ = self.packed_shape
        width = self.heads * self.key_dim
        d_qkv = np.empty(self.packed_shape, self.probabilities.dtype)
        parts = (d_qkv[..., :width], d_qkv[..., width:2 * width], d_qkv[..., 2 * width:])
        # splitting the last axis of a slice of it is a view: the gradients land in d_qkv itself
        views = tuple(part.reshape(batch, steps, self.heads, -1) for part in parts)
        self._gradients(d_out, d_probabilities, True, True, d_out is not None, views)  # type: ignore[arg-type]
        if d_out is None:  # only the scores were used: v had no part in them
            parts[2][...] = 0
        return (d_qkv,)


_NO_MASK = np.ones((1, 1, 1), bool)  # stands in for "no mask" (the kernel reads has_mask first)


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor, scale: float, mask: np.ndarray | None = None,
                          keep: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """(attention output (batch, queries, heads, value_dim), probabilities (batch, heads, queries, keys)).

    q (batch, queries, heads, key_dim), k (batch, keys, heads, key_dim), v (batch, keys, heads, value_dim);
    `mask` (1 or batch, queries, keys) True where a query may attend to a key; `keep` a dropout keep-mask on
    the probabilities (batch, heads, queries, keys).
    """
    return DotProductAttention.apply(q, k, v, scale=scale, mask=mask, keep=keep)


def packed_self_attention(qkv: Tensor, heads: int, key_dim: int, value_dim: int, scale: float,
                          mask: np.ndarray | None = None, keep: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """dot_product_attention of one packed projection qkv (batch, steps, heads * (2 key_dim + value_dim)),
    [q | k | v] along its last axis; the same two outputs."""
    return PackedSelfAttention.apply(qkv, heads=heads, key_dim=key_dim, value_dim=value_dim, scale=scale, mask=mask,
                                     keep=keep)
