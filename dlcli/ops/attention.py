"""Scaled dot-product attention over several heads at once: batched matrix products and a masked softmax."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class _Part(NamedTuple):
    """Examples whose blocks are multiplied together: where their block [q0, q1) x [k0, k1) lies in the (batch,
    heads, queries, keys) probabilities, and views of their rows of q, k, v and of the output, (examples, block
    steps, heads, size)."""

    examples: slice
    q0: int
    q1: int
    k0: int
    k1: int
    q: Array
    k: Array
    v: Array
    out: Array


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
    q's, k's and v's layout. Where it repays the extra calls (see _blocks), only each example's block of
    attended pairs is multiplied (the bounding box of its mask, see dlcli/kernels/attention.py): outside it
    every probability is exactly 0, so the padded steps of a padded batch cost nothing, and what is computed
    is what Keras computes.
    """

    def __init__(self, scale: float, mask: Array | None = None, keep: Array | None = None) -> None:
        self.scale, self.mask, self.keep = scale, mask, keep

    def forward(self, q: Array, k: Array, v: Array) -> tuple[Array, Array]:
        batch, queries, heads, _ = q.shape
        self.shapes = q.shape, k.shape, v.shape
        out = np.empty((batch, queries, heads, v.shape[-1]), q.dtype)
        # the products' FLOPs per attended pair: 2 forward (scores, output), 4 backward, 2 per multiply-add
        groups = self._blocks(batch, queries, k.shape[1], 6 * heads * (q.shape[-1] + v.shape[-1]))
        _zero_outside(out, self.blocks, 1)
        parts = [_Part(ex, q0, q1, k0, k1, q[ex, q0:q1], k[ex, k0:k1], v[ex, k0:k1], out[ex, q0:q1])
                 for ex, q0, q1, k0, k1 in groups]
        return out, self._attend(parts, (batch, heads, queries, k.shape[1]), q.dtype)

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None
                 ) -> tuple[Array | None, Array | None, Array | None]:
        dtype = self.probabilities.dtype
        into = tuple(np.empty(shape, dtype) if need else None for shape, need in zip(self.shapes, self.needs_grad))
        return self._backward_into(d_out, d_probabilities, into)  # type: ignore[arg-type]

    def _blocks(self, batch: int, queries: int, keys: int, pair_flops: float, row_flops: float = 0.0
                ) -> list[tuple[slice, int, int, int, int]]:
        """Each example's block (self.blocks) from the mask; the groups multiplied together.

        Multiplying example by example costs Python and NumPy calls (about 25 us an example, forward and
        backward, measured), which a small model's products do not repay: unless the pairs (each costing
        `pair_flops`) and the steps (`row_flops`, the projections') that per-example blocks skip beyond the
        batch's bounding box are worth more than PER_EXAMPLE_FLOPS an example, every example takes the bounding
        box, one product for the batch (sequence 32, width 32, batch 32: an attention step took 1.7 ms example
        by example, 1.2 ms in one product).
        """
        from dlcli.kernels import attention as kernels  # here, so `dlcli --help` loads no numba

        blocks = kernels.mask_blocks(self.mask, batch, queries, keys)
        union = kernels.union_blocks(blocks)
        saved_pairs = int((_pairs(union) - _pairs(blocks)).sum())
        saved_rows = int((_rows(union) - _rows(blocks)).sum())
        if saved_pairs * pair_flops + saved_rows * row_flops < PER_EXAMPLE_FLOPS * batch:
            blocks = union
        self.blocks = blocks
        return kernels.block_groups(blocks)

    def _attend(self, parts: list[_Part], shape: tuple[int, int, int, int], dtype: np.dtype) -> Array:
        """Write each part's output rows; return the probabilities (batch, heads, queries, keys)."""
        from dlcli.kernels import attention as kernels

        self.parts = parts
        scores = np.empty(shape, dtype)  # only the blocks are written and read
        for part in parts:
            np.matmul(np.swapaxes(part.q, 1, 2), part.k.transpose(0, 2, 3, 1),
                      out=scores[part.examples, :, part.q0:part.q1, part.k0:part.k1])
        self.probabilities = np.empty_like(scores)
        mask = _NO_MASK if self.mask is None else np.ascontiguousarray(self.mask, bool)
        kernels.masked_softmax_blocks(scores, mask, self.mask is not None, self.scale, self.blocks,
                                      self.probabilities)
        self.weights = self.probabilities if self.keep is None else self.probabilities * self.keep
        for part in parts:
            np.matmul(self.weights[part.examples, :, part.q0:part.q1, part.k0:part.k1], np.swapaxes(part.v, 1, 2),
                      out=np.swapaxes(part.out, 1, 2))
        return self.probabilities

    def _backward_into(self, d_out: Array | None, d_probabilities: Array | None,
                       into: tuple[Array | None, Array | None, Array | None]
                       ) -> tuple[Array | None, Array | None, Array | None]:
        """(d_q, d_k, d_v) written into `into`'s arrays, each in the layout of q, k or v (None where not needed):
        the blocks by the products, the rest zeros."""
        d_q, d_k, d_v = into
        if d_out is None and d_v is not None:  # only the scores were used: v had no part in them
            d_v[...] = 0
            d_v = None
        d_outs = None if d_out is None else [d_out[part.examples, part.q0:part.q1] for part in self.parts]
        views = [(None if d_q is None else d_q[part.examples, part.q0:part.q1],
                  None if d_k is None else d_k[part.examples, part.k0:part.k1],
                  None if d_v is None else d_v[part.examples, part.k0:part.k1]) for part in self.parts]
        self._gradients(d_outs, d_probabilities, views)
        for gradient, column in ((d_q, 1), (d_k, 3), (d_v, 3)):
            if gradient is not None:
                _zero_outside(gradient, self.blocks, column)
        return into

    def _gradients(self, d_outs: list[Array] | None, d_probabilities: Array | None,
                   views: list[tuple[Array | None, Array | None, Array | None]]) -> None:
        """Each part's block of d_q, d_k and d_v written into its `views` (None: not needed), from its rows of
        the output's gradient (`d_outs`, None when only the probabilities were used) and the probabilities'."""
        from dlcli.kernels import attention as kernels

        d_weights = np.empty_like(self.probabilities)  # only the blocks are written and read
        for index, part in enumerate(self.parts):
            block = (part.examples, slice(None), slice(part.q0, part.q1), slice(part.k0, part.k1))
            d_block = d_weights[block]
            if d_outs is None:
                d_block[...] = d_probabilities[block]  # type: ignore[index]
                continue
            d_heads = np.swapaxes(d_outs[index], 1, 2)  # (examples, heads, queries, value_dim)
            np.matmul(d_heads, part.v.transpose(0, 2, 3, 1), out=d_block)
            d_v = views[index][2]
            if d_v is not None:
                np.matmul(np.swapaxes(self.weights[block], -1, -2), d_heads, out=np.swapaxes(d_v, 1, 2))
            if self.keep is not None:
                d_block *= self.keep[block]
            if d_probabilities is not None:
                d_block += d_probabilities[block]
        d_scores = np.empty_like(self.probabilities)
        kernels.softmax_block_backward(self.probabilities, d_weights, np.full(1, self.scale, d_weights.dtype),
                                       self.blocks, d_scores)
        for part, (d_q, d_k, _) in zip(self.parts, views):
            d_block = d_scores[part.examples, :, part.q0:part.q1, part.k0:part.k1]
            if d_q is not None:
                np.matmul(d_block, np.swapaxes(part.k, 1, 2), out=np.swapaxes(d_q, 1, 2))
            if d_k is not None:
                np.matmul(np.swapaxes(d_block, -1, -2), np.swapaxes(part.q, 1, 2), out=np.swapaxes(d_k, 1, 2))


PER_EXAMPLE_FLOPS = 3e6  # what BLAS does in the ~25 us one example's extra calls cost (about 120 GFLOP/s)


def _pairs(blocks: Array) -> Array:
    """The (query, key) pairs in each block."""
    return (blocks[:, 1] - blocks[:, 0]) * (blocks[:, 3] - blocks[:, 2])


def _rows(blocks: Array) -> Array:
    """The steps each block's queries and keys span together (a self-attention's projected rows)."""
    return np.where(blocks[:, 1] > blocks[:, 0], np.maximum(blocks[:, 1], blocks[:, 3]) -
                    np.minimum(blocks[:, 0], blocks[:, 2]), 0)


def _zero_outside(a: Array, blocks: Array, column: int) -> None:
    """Zero the steps (axis 1) of each example of `a` outside its block's [blocks[:, column - 1], blocks[:,
    column]) (the queries for column 1, the keys for column 3): what no product writes there."""
    first, end = blocks[0, column - 1:column + 1]
    if end > first and (blocks == blocks[0]).all():  # one block for the batch: two assignments, not a loop
        a[:, :first] = 0
        a[:, end:] = 0
        return
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

    def _split(self, qkv: Array) -> tuple[Array, Array, Array]:
        return split_packed(qkv, self.heads, self.key_dim)

    def forward(self, qkv: Array) -> tuple[Array, Array]:  # type: ignore[override]
        self.packed_shape = qkv.shape
        return super().forward(*self._split(qkv))

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None) -> tuple[Array]:  # type: ignore
        d_qkv = np.empty(self.packed_shape, self.probabilities.dtype)
        # splitting the last axis of a slice of it is a view: the gradients land in d_qkv itself
        self._backward_into(d_out, d_probabilities, self._split(d_qkv))
        return (d_qkv,)


def split_packed(qkv: Array, heads: int, key_dim: int) -> tuple[Array, Array, Array]:
    """Views of q, k and v (..., steps, heads, size) in a packed array (..., steps, heads * (2 key_dim +
    value_dim)): splitting the last axis of a slice of it is a view, so writing into them writes into qkv."""
    width, lead = heads * key_dim, qkv.shape[:-1]
    return (qkv[..., :width].reshape(*lead, heads, -1), qkv[..., width:2 * width].reshape(*lead, heads, -1),
            qkv[..., 2 * width:].reshape(*lead, heads, -1))


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
