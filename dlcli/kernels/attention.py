"""The masked softmax of attention, over the last axis of (batch, heads, queries, keys) scores, and its backward.

Keras' masked softmax sets masked scores to -1e9, takes the softmax and zeroes the masked probabilities, so a
row with no valid key gives all zeros, not a uniform row. Here a masked score becomes LOW (the float32
minimum), whose exponential after the shift is exactly 0 as Keras' is, and a row whose sum is 0 (no valid
key) stays all zeros. The mask is (1 or batch, queries, keys), shared by every head; rows are independent,
so the loops run over (batch, head) pairs in parts on threads (kernels/parts.py: a prange loop here cost
about 1 s more to compile on an empty cache, for the same run time). The exponentials are NumPy's, between the two
kernels: its SIMD exp was 10x faster than Numba's scalar one, and the three passes (shift, exp, normalize)
took 8 ms where one Numba pass took 31 ms ((32, 2, 200, 200) float32, one thread). The row maxima and sums
may be reassociated (fastmath "reassoc" only), which lets LLVM vectorize them.

Each example has a block, (first query, end query, first key, end key): the bounding box of its mask's True
entries (a padded review's valid steps). Outside it every probability is 0, so the kernels write zeros
there and compute only inside; the caller multiplies only the blocks. The attention scale multiplies the
scores here, inside the shift, and the score gradient in the backward, instead of a scaled copy of q.
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts

LOW = -3.4028234e38  # the float32 minimum (finite: fastmath may not assume infinities away, so none is needed)
_SUMS = {"reassoc"}
_PART_ENTRIES = 16384  # scores a thread's part holds at least: fewer are quicker on the calling thread alone


def _pairs_per_part(queries: int, keys: int) -> int:
    return max(1, _PART_ENTRIES // max(queries * keys, 1))


def shift_scores(scores: np.ndarray, mask: np.ndarray, has_mask: bool, constants: np.ndarray, blocks: np.ndarray,
                 out: np.ndarray) -> None:
    """In each example's block: out = scores * scale - (the row's maximum of that over its valid keys) where the
    mask holds, LOW where it does not; 0 outside the block; (batch, head) pairs in parts, one per thread.

    constants is [scale, LOW] in the scores' dtype: a float64 constant would turn the float32 loops into
    float64 ones (1.7x slower measured). blocks is (batch, 4): first query, end query, first key, end key.
    """
    batch, heads, queries, keys = scores.shape
    in_parts(_shift_score_pairs, batch * heads, scores, mask, has_mask, constants, blocks, out,
             min_rows=_pairs_per_part(queries, keys))


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_SUMS, no_cfunc_wrapper=True)
def _shift_score_pairs(scores: np.ndarray, mask: np.ndarray, has_mask: bool, constants: np.ndarray,
                       blocks: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    """shift_scores of the (batch, head) pairs [lo, hi)."""
    heads, queries, keys = scores.shape[1:]
    shared = mask.shape[0] == 1
    scale, floor = constants[0], constants[1]
    zero = scale * 0
    for pair in range(lo, hi):
        b, h = pair // heads, pair % heads
        m = 0 if shared else b
        q0, q1, k0, k1 = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3]
        for t in range(queries):
            if t < q0 or t >= q1:
                for s in range(keys):
                    out[b, h, t, s] = zero
                continue
            top = floor
            for s in range(k0, k1):
                value = scores[b, h, t, s] * scale if not has_mask or mask[m, t, s] else floor
                top = max(top, value)
            for s in range(keys):
                if s < k0 or s >= k1:
                    out[b, h, t, s] = zero
                elif not has_mask or mask[m, t, s]:
                    out[b, h, t, s] = scores[b, h, t, s] * scale - top
                else:
                    out[b, h, t, s] = floor


def normalize_rows(exponentials: np.ndarray, blocks: np.ndarray) -> None:
    """Each block row divided by its sum, in place; a row summing to 0 (no valid key) stays zeros."""
    batch, heads, queries, keys = exponentials.shape
    in_parts(_normalize_pairs, batch * heads, exponentials, blocks, min_rows=_pairs_per_part(queries, keys))


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_SUMS, no_cfunc_wrapper=True)
def _normalize_pairs(exponentials: np.ndarray, blocks: np.ndarray, lo: int, hi: int) -> None:
    """normalize_rows of the (batch, head) pairs [lo, hi)."""
    heads = exponentials.shape[1]
    for pair in range(lo, hi):
        b, h = pair // heads, pair % heads
        q0, q1, k0, k1 = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3]
        for t in range(q0, q1):
            total = exponentials[b, h, t, 0] * 0
            for s in range(k0, k1):
                total += exponentials[b, h, t, s]
            if total > 0:
                inverse = 1 / total
                for s in range(k0, k1):
                    exponentials[b, h, t, s] *= inverse


def softmax_block_backward(probabilities: np.ndarray, d_probabilities: np.ndarray, scale: np.ndarray,
                           blocks: np.ndarray, d_scores: np.ndarray) -> None:
    """In each block: d_scores = scale * p * (d_p - sum(d_p * p)) per row (the gradient of the unscaled scores);
    masked entries have p = 0, so they get none. Outside the blocks d_scores is not written."""
    batch, heads, queries, keys = probabilities.shape
    in_parts(_softmax_backward_pairs, batch * heads, probabilities, d_probabilities, scale, blocks, d_scores,
             min_rows=_pairs_per_part(queries, keys))


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_SUMS, no_cfunc_wrapper=True)
def _softmax_backward_pairs(probabilities: np.ndarray, d_probabilities: np.ndarray, scale: np.ndarray,
                            blocks: np.ndarray, d_scores: np.ndarray, lo: int, hi: int) -> None:
    """softmax_block_backward of the (batch, head) pairs [lo, hi)."""
    heads = probabilities.shape[1]
    factor = scale[0]
    for pair in range(lo, hi):
        b, h = pair // heads, pair % heads
        q0, q1, k0, k1 = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3]
        for t in range(q0, q1):
            dot = probabilities[b, h, t, 0] * 0
            for s in range(k0, k1):
                dot += d_probabilities[b, h, t, s] * probabilities[b, h, t, s]
            for s in range(k0, k1):
                d_scores[b, h, t, s] = factor * probabilities[b, h, t, s] * (d_probabilities[b, h, t, s] - dot)


def mask_blocks(mask: np.ndarray | None, batch: int, queries: int, keys: int) -> np.ndarray:
    """(batch, 4) int64: each example's bounding box of attended (query, key) pairs, [q0, q1) x [k0, k1).

    No mask: the whole (queries, keys) square. An example whose mask is all False gets an empty block.
    """
    blocks = np.empty((batch, 4), np.int64)
    if mask is None:
        blocks[:] = (0, queries, 0, keys)
        return blocks
    for column, (hits, length) in enumerate(((mask.any(axis=2), queries), (mask.any(axis=1), keys))):
        found = hits.any(axis=1)
        first = np.where(found, hits.argmax(axis=1), 0)
        end = np.where(found, length - hits[:, ::-1].argmax(axis=1), 0)
        blocks[:, 2 * column] = first  # a shared mask (1, ...) broadcasts over the batch
        blocks[:, 2 * column + 1] = end
    return blocks


def union_blocks(blocks: np.ndarray) -> np.ndarray:
    """Every example given the bounding box of all the (non-empty) blocks; a block only has to hold every pair
    its example attends, so this is as valid, and makes one product for the whole batch."""
    used = blocks[:, 1] > blocks[:, 0]
    if not used.any():
        return blocks
    union = (blocks[used, 0].min(), blocks[used, 1].max(), blocks[used, 2].min(), blocks[used, 3].max())
    return np.tile(np.array(union, np.int64), (len(blocks), 1))


def block_groups(blocks: np.ndarray) -> list[tuple[slice, int, int, int, int]]:
    """(examples, q0, q1, k0, k1) to multiply together: the whole batch when every block is the same, else one
    example at a time (empty blocks are left out)."""
    if (blocks == blocks[0]).all():
        q0, q1, k0, k1 = (int(v) for v in blocks[0])
        return [(slice(None), q0, q1, k0, k1)] if q1 > q0 else []
    return [(slice(b, b + 1), *(int(v) for v in block)) for b, block in enumerate(blocks) if block[1] > block[0]]


def masked_softmax_blocks(scores: np.ndarray, mask: np.ndarray, has_mask: bool, scale: float, blocks: np.ndarray,
                          out: np.ndarray) -> None:
    """out = softmax(scale * scores) over the last axis where mask holds, 0 where it does not and outside each
    example's block (rows with no valid key: all 0). Only the blocks of scores are read."""
    shift_scores(scores, mask, has_mask, np.array([scale, LOW], scores.dtype), blocks, out)
    for examples, q0, q1, k0, k1 in block_groups(blocks):
        block = out[examples, :, q0:q1, k0:k1]
        np.exp(block, out=block)
    normalize_rows(out, blocks)


def masked_softmax(scores: np.ndarray, mask: np.ndarray, has_mask: bool, out: np.ndarray) -> None:
    """out = softmax(scores) over the last axis where mask holds, 0 where it does not (rows with none: all 0)."""
    batch, _, queries, keys = scores.shape
    masked_softmax_blocks(scores, mask, has_mask, 1.0, mask_blocks(None, batch, queries, keys), out)


def softmax_backward(probabilities: np.ndarray, d_probabilities: np.ndarray, d_scores: np.ndarray) -> None:
    """d_scores = p * (d_p - sum(d_p * p)) per row; masked entries have p = 0, so they get no gradient."""
    batch, _, queries, keys = probabilities.shape
    softmax_block_backward(probabilities, d_probabilities, np.ones(1, probabilities.dtype),
                           mask_blocks(None, batch, queries, keys), d_scores)
