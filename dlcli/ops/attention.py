"""Scaled dot-product attention over several heads at once: batched matrix products and a masked softmax."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class DotProductAttention(Op):
    """softmax(q k^T * scale, masked) v for every head of every example, as batched matrix products.

    q is (batch, queries, heads, key_dim), k (batch, keys, heads, key_dim) and v (batch, keys, heads,
    value_dim): Keras' projected layout. Two outputs: the attention output (batch, queries, heads, value_dim)
    and the probabilities (batch, heads, queries, keys), Keras' attention scores, each with its own gradient.
    Dropout (a keep-mask of 0 or 1 / (1 - rate) drawn by the caller) applies to the probabilities that weigh v,
    not to the scores returned, as in Keras. The mask (1 or batch, queries, keys) is True where a query may
    attend to a key; a query with no key gets zeros.

    Keras scales q before the product; here the softmax kernel scales the product (the same up to rounding),
    so no scaled copy of q is made. Each matrix product reads q, k and v where they lie (views into one packed
    projection, for self-attention) and writes into the layout its result is wanted in: the output straight
    into (batch, queries, heads, value_dim), whose merge of the heads is then free, the gradients straight into
    q's, k's and v's layout. Only each example's block of attended pairs is multiplied (the bounding box of its
    mask, see dlcli/kernels/attention.py): outside it every probability is exactly 0, so the padded steps of a
    padded batch cost nothing, and what is computed is what Keras computes.
    """

    def __init__(self, scale: float, mask: Array | None = None, keep: Array | None = None) -> None:
        self.scale, self.mask, self.keep = scale, mask, keep

    def forward(self, q: Array, k: Array, v: Array) -> tuple[Array, Array]:
        return self._attend(q, k, v)

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None
                 ) -> tuple[Array | None, Array | None, Array | None]:
        q, k, v = self.q, self.k, self.v
        into = tuple(np.empty(a.shape, self.probabilities.dtype) if need else None
                     for a, need in zip((q, k, v), self.needs_grad))
        return self._gradients(d_out, d_probabilities, into)  # type: ignore[arg-type]

    def _attend(self, q: Array, k: Array, v: Array) -> tuple[Array, Array]:
        from dlcli.kernels import attention as kernels  # here, so `dlcli --help` loads no numba

        batch, queries, heads, _ = q.shape
        keys = k.shape[1]
        self.q, self.k, self.v = q, k, v
        self.blocks = kernels.mask_blocks(self.mask, batch, queries, keys)
        self.groups = kernels.block_groups(self.blocks)
        scores = np.empty((batch, heads, queries, keys), q.dtype)
        for examples, q0, q1, k0, k1 in self.groups:
            np.matmul(np.swapaxes(q[examples, q0:q1], 1, 2), k[examples, k0:k1].transpose(0, 2, 3, 1),
                      out=scores[examples, :, q0:q1, k0:k1])
        self.probabilities = np.empty_like(scores)
        mask = _NO_MASK if self.mask is None else np.ascontiguousarray(self.mask, bool)
        kernels.masked_softmax_blocks(scores, mask, self.mask is not None, self.scale, self.blocks,
                                      self.probabilities)
        self.weights = self.probabilities if self.keep is None else self.probabilities * self.keep
        out = np.empty((batch, queries, heads, v.shape[-1]), q.dtype)
        _zero_outside(out, self.blocks, 1)
        for examples, q0, q1, k0, k1 in self.groups:
            np.matmul(self.weights[examples, :, q0:q1, k0:k1], np.swapaxes(v[examples, k0:k1], 1, 2),
                      out=np.swapaxes(out[examples, q0:q1], 1, 2))
        return out, self.probabilities

    def _gradients(self, d_out: Array | None, d_probabilities: Array | None,
                   into: tuple[Array | None, Array | None, Array | None]
                   ) -> tuple[Array | None, Array | None, Array | None]:
        """(d_q, d_k, d_v) written into `into`'s arrays (in the layout of q, k and v; None where not needed),
        each written once: the blocks by the products, the rest zeros."""
        from dlcli.kernels import attention as kernels

        d_q, d_k, d_v = into
        if d_out is None and d_v is not None:  # only the scores were used: v had no part in them
            d_v[...] = 0
        q, k, v = self.q, self.k, self.v
        d_weights = np.empty_like(self.probabilities)  # only the blocks are written and read
        for examples, q0, q1, k0, k1 in self.groups:
            d_block = d_weights[examples, :, q0:q1, k0:k1]
            if d_out is None:
                d_block[...] = d_probabilities[examples, :, q0:q1, k0:k1]  # type: ignore[index]
                continue
            d_heads = np.swapaxes(d_out[examples, q0:q1], 1, 2)  # (examples, heads, queries, value_dim)
            np.matmul(d_heads, v[examples, k0:k1].transpose(0, 2, 3, 1), out=d_block)
            if d_v is not None:
                np.matmul(np.swapaxes(self.weights[examples, :, q0:q1, k0:k1], -1, -2), d_heads,
                          out=np.swapaxes(d_v[examples, k0:k1], 1, 2))
            if self.keep is not None:
                d_block *= self.keep[examples, :, q0:q1, k0:k1]
            if d_probabilities is not None:
                d_block += d_probabilities[examples, :, q0:q1, k0:k1]
        d_scores = np.empty_like(self.probabilities)
        kernels.softmax_block_backward(self.probabilities, d_weights, np.full(1, self.scale, d_weights.dtype),
                                       self.blocks, d_scores)
        for examples, q0, q1, k0, k1 in self.groups:
            d_block = d_scores[examples, :, q0:q1, k0:k1]
            if d_q is not None:
                np.matmul(d_block, np.swapaxes(k[examples, k0:k1], 1, 2), out=np.swapaxes(d_q[examples, q0:q1], 1, 2))
            if d_k is not None:
                np.matmul(np.swapaxes(d_block, -1, -2), np.swapaxes(q[examples, q0:q1], 1, 2),
                          out=np.swapaxes(d_k[examples, k0:k1], 1, 2))
        for gradient, column in ((d_q, 1), (d_k, 3), (d_v if d_out is not None else None, 3)):
            if gradient is not None:
                _zero_outside(gradient, self.blocks, column)
        return d_q, d_k, d_v


def _zero_outside(a: Array, blocks: Array, column: int) -> None:
    """Zero the steps (axis 1) of each example of `a` outside its block's [blocks[:, column - 1], blocks[:,
    column]) (the queries for column 1, the keys for column 3): what no product writes there."""
    for b, (first, end) in enumerate(blocks[:, column - 1:column + 1]):
        if end <= first:
            a[b] = 0
            continue
        a[b, :first] = 0
        a[b, end:] = 0


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
        self._gradients(d_out, d_probabilities, views)  # type: ignore[arg-type]
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
