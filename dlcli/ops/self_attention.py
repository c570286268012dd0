"""Self-attention with its projections inside: x to [q | k | v] by one matrix product, attention, then the output
projection, each product over only the steps that some attended pair uses."""

from __future__ import annotations

import numpy as np

from dlcli.ops.attention import DotProductAttention, _Part, split_packed
from dlcli.tensor import Array, Tensor


class SelfAttention(DotProductAttention):
    """Multi-head self-attention of x (batch, steps, features): the output (batch, steps, out features) and the
    probabilities (batch, heads, steps, steps), as DotProductAttention gives them.

    qkv_kernel (features, heads * (2 key_dim + value_dim)) is Keras' query, key and value kernels side by side
    and qkv_bias their biases; out_kernel (heads * value_dim, out features) and out_bias the output projection.
    A step outside its example's block (the bounding box of the mask: a padded review's padding) takes part in
    no attended pair, so its q, k and v are never read and its attention output is 0: its output is out_bias
    and it gets no gradient. Only the rows of the other steps are gathered and projected, so every product of
    the layer, not only the attention's own, skips the padding, and the values are what Keras computes.
    """

    def __init__(self, heads: int, key_dim: int, value_dim: int, scale: float, mask: Array | None = None,
                 keep: Array | None = None) -> None:
        super().__init__(scale, mask, keep)
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim

    def forward(self, x: Array, qkv_kernel: Array, *rest: Array) -> tuple[Array, Array]:  # type: ignore[override]
        qkv_bias, out_kernel, out_bias = rest if len(rest) == 3 else (None, rest[0], None)
        batch, steps, features = self.x_shape = x.shape
        width = self.heads * self.value_dim
        # FLOPs, forward and backward (x3), per attended pair and per projected step
        groups = self._blocks(batch, steps, steps, 6 * self.heads * (self.key_dim + self.value_dim),
                              6 * (features * qkv_kernel.shape[-1] + width * out_kernel.shape[-1]))
        starts = np.minimum(self.blocks[:, 0], self.blocks[:, 2])
        ends = np.maximum(self.blocks[:, 1], self.blocks[:, 3])
        flat = x.reshape(-1, features)
        if (starts == 0).all() and (ends == steps).all():
            self.rows = None
            x_rows = np.ascontiguousarray(flat)
        else:  # the steps of each example's block, example after example
            self.rows = np.concatenate([np.arange(b * steps + s, b * steps + e) for b, (s, e) in
                                        enumerate(zip(starts, ends))])
            x_rows = flat[self.rows]
        qkv = x_rows @ qkv_kernel
        if qkv_bias is not None:
            qkv += qkv_bias
        attended = np.empty((len(x_rows), width), x.dtype)
        self.x_rows, self.qkv_kernel, self.out_kernel, self.attended = x_rows, qkv_kernel, out_kernel, attended
        self.local = self._local_rows(groups, starts, ends)
        parts = []
        for (examples, q0, q1, k0, k1), (rows, first, length) in zip(groups, self.local):
            q, k, v = self._split(qkv[rows].reshape(-1, length, qkv.shape[-1]))
            out = attended[rows].reshape(-1, length, self.heads, self.value_dim)
            out[:, :q0 - first] = 0  # steps of the block's rows that are no query of it
            out[:, q1 - first:] = 0
            parts.append(_Part(examples, q0, q1, k0, k1, q[:, q0 - first:q1 - first], k[:, k0 - first:k1 - first],
                               v[:, k0 - first:k1 - first], out[:, q0 - first:q1 - first]))
        probabilities = self._attend(parts, (batch, self.heads, steps, steps), x.dtype)
        out_rows = attended @ out_kernel
        if out_bias is not None:
            out_rows += out_bias
        if self.rows is None:
            return out_rows.reshape(batch, steps, -1), probabilities
        out = np.empty((batch * steps, out_rows.shape[-1]), x.dtype)
        out[...] = 0 if out_bias is None else out_bias
        out[self.rows] = out_rows
        return out.reshape(batch, steps, -1), probabilities

    def _local_rows(self, groups: list[tuple[slice, int, int, int, int]], starts: Array, ends: Array
                    ) -> list[tuple[slice, int, int]]:
        """For each group: its slice of the gathered rows, the step they start at and their steps per example."""
        if len(groups) == 1 and groups[0][0] == slice(None):
            return [(slice(None), int(starts[0]), int(ends[0] - starts[0]))]
        offsets = np.concatenate([[0], np.cumsum(ends - starts)])
        return [(slice(int(offsets[ex.start]), int(offsets[ex.start + 1])), int(starts[ex.start]),
                 int(ends[ex.start] - starts[ex.start])) for ex, *_ in groups]

    def _split(self, qkv: Array) -> tuple[Array, Array, Array]:
        return split_packed(qkv, self.heads, self.key_dim)

    def backward(self, d_out: Array | None, d_probabilities: Array | None = None  # type: ignore[override]
                 ) -> tuple[Array | None, ...]:
        attended, dtype = self.attended, self.attended.dtype
        has_bias = len(self.needs_grad) == 5
        d_out_kernel = np.zeros(self.out_kernel.shape, dtype)
        d_out_bias = np.zeros(self.out_kernel.shape[-1], dtype)
        d_outs = None
        if d_out is not None:
            flat = d_out.reshape(-1, d_out.shape[-1])
            d_out_bias = flat.sum(axis=0)  # every step's output has the bias, a padded one too
            d_out_rows = flat if self.rows is None else flat[self.rows]
            d_out_kernel = attended.T @ d_out_rows
            d_attended = d_out_rows @ self.out_kernel.T
            d_outs = []
            for part, (rows, first, length) in zip(self.parts, self.local):
                d_heads = d_attended[rows].reshape(-1, length, self.heads, self.value_dim)
                d_outs.append(d_heads[:, part.q0 - first:part.q1 - first])
        # a step of a block's rows may be no query (or no key) of it: its gradient there is 0
        whole = all(part.q0 == part.k0 == first and part.q1 == part.k1 for part, (_, first, _) in
                    zip(self.parts, self.local))
        shape = (len(self.x_rows), self.qkv_kernel.shape[-1])
        d_qkv = np.empty(shape, dtype) if whole and d_out is not None else np.zeros(shape, dtype)
        views = []
        for part, (rows, first, length) in zip(self.parts, self.local):
            d_q, d_k, d_v = self._split(d_qkv[rows].reshape(-1, length, d_qkv.shape[-1]))
            views.append((d_q[:, part.q0 - first:part.q1 - first], d_k[:, part.k0 - first:part.k1 - first],
                          None if d_out is None else d_v[:, part.k0 - first:part.k1 - first]))
        self._gradients(d_outs, d_probabilities, views)
        d_x = None
        if self.needs_grad[0]:
            d_rows = d_qkv @ self.qkv_kernel.T
            if self.rows is None:
                d_x = d_rows.reshape(self.x_shape)
            else:
                d_x = np.zeros((self.x_shape[0] * self.x_shape[1], self.x_shape[2]), dtype)
                d_x[self.rows] = d_rows
                d_x = d_x.reshape(self.x_shape)
        d_qkv_kernel = self.x_rows.T @ d_qkv if self.needs_grad[1] else None
        if not has_bias:
            return d_x, d_qkv_kernel, d_out_kernel
        return d_x, d_qkv_kernel, d_qkv.sum(axis=0), d_out_kernel, d_out_bias


def self_attention(x: Tensor, qkv_kernel: Tensor, qkv_bias: Tensor | None, out_kernel: Tensor,
                   out_bias: Tensor | None, heads: int, key_dim: int, value_dim: int, scale: float,
                   mask: np.ndarray | None = None, keep: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """Multi-head self-attention of x (batch, steps, features) with its projections: (output (batch, steps, out
    features), probabilities (batch, heads, steps, steps)). qkv_kernel (features, heads * (2 key_dim +
    value_dim)) is [query | key | value] side by side, out_kernel (heads * value_dim, out features); the
    biases are both given or both None; `mask` and `keep` as for dot_product_attention."""
    weights = (qkv_kernel, out_kernel) if qkv_bias is None else (qkv_kernel, qkv_bias, out_kernel, out_bias)
    return SelfAttention.apply(x, *weights, heads=heads, key_dim=key_dim, value_dim=value_dim, scale=scale,
                               mask=mask, keep=keep)
