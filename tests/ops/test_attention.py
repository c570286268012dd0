"""The dot_product_attention op: both outputs' gradients with masks, causal masks, dropout and several heads."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops import attention
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(41)
BATCH, QUERIES, KEYS, HEADS, KEY_DIM, VALUE_DIM = 2, 3, 4, 2, 3, 2
PADDING = np.ones((BATCH, QUERIES, KEYS), bool)
PADDING[0, :, 3] = False  # the first example's last key is padding
PADDING[1, 2, :] = False  # the second example's last query is padding: a row with no key at all
CAUSAL = np.tril(np.ones((QUERIES, KEYS), bool))[None]
KEEP = (rng.random((BATCH, HEADS, QUERIES, KEYS)) >= 0.3) / 0.7
# padding in front, as a padded review has it, and an example with no valid step at all: each example's block
# of attended pairs differs, and one is empty
FRONT = np.zeros((3, QUERIES, KEYS), bool)
FRONT[0, 1:, 2:] = True
FRONT[1, :, 1:] = True


@pytest.fixture(autouse=True, params=["per_example", "whole_batch"])
def block_strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with each example multiplied over its own mask block, and with the batch's bounding box
    (what small products get: dlcli/ops/attention.py's PER_EXAMPLE_FLOPS)."""
    monkeypatch.setattr(attention, "PER_EXAMPLE_FLOPS", 0.0 if request.param == "per_example" else float("inf"))
    return request.param


def _inputs() -> list[np.ndarray]:
    return [rng.normal(size=(BATCH, QUERIES, HEADS, KEY_DIM)), rng.normal(size=(BATCH, KEYS, HEADS, KEY_DIM)),
            rng.normal(size=(BATCH, KEYS, HEADS, VALUE_DIM))]


def _both(mask: np.ndarray | None, keep: np.ndarray | None = None):
    """A scalar of both outputs, so the probabilities' own gradient (the scores port) is checked too."""
    def fn(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out, probabilities = ops.dot_product_attention(q, k, v, 0.6, mask, keep)
        return (out * 0.5).sum() + (probabilities * probabilities).sum()
    return fn


CASES = {
    "dot_product_attention": (_both(None), _inputs()),
    "dot_product_attention_padding_mask": (_both(PADDING), _inputs()),
    "dot_product_attention_causal": (_both(CAUSAL), _inputs()),
    "dot_product_attention_dropout": (_both(PADDING, KEEP), _inputs()),
    "dot_product_attention_front_padding": (_both(FRONT), [rng.normal(size=(3, *a.shape[1:])) for a in _inputs()]),
    "dot_product_attention_output_only": (lambda q, k, v: ops.dot_product_attention(q, k, v, 0.6, PADDING)[0],
                                          _inputs()),
    # one (batch, steps, heads * (key_dim + key_dim + value_dim)) input: [q | k | v], self-attention's packing
    "packed_self_attention": (lambda qkv: ops.packed_self_attention(qkv, HEADS, KEY_DIM, VALUE_DIM, 0.6,
                                                                    PADDING[:, :, :3])[0],
                              [rng.normal(size=(BATCH, QUERIES, HEADS * (2 * KEY_DIM + VALUE_DIM)))]),
    "packed_self_attention_scores_dropout": (
        lambda qkv: (ops.packed_self_attention(qkv, HEADS, KEY_DIM, VALUE_DIM, 0.6, CAUSAL[:, :, :3],
                                               KEEP[:, :, :, :3])[1] ** 2).sum(),
        [rng.normal(size=(BATCH, QUERIES, HEADS * (2 * KEY_DIM + VALUE_DIM)))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_attention_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_masked_keys_get_no_weight_and_a_query_without_keys_gets_zeros() -> None:
    q, k, v = (Tensor(a.astype(np.float32)) for a in _inputs())
    out, probabilities = ops.dot_product_attention(q, k, v, 0.6, PADDING)
    p = probabilities.data
    assert (p[0, :, :, 3] == 0).all() and (p[1, :, 2] == 0).all() and (out.data[1, 2] == 0).all()
    np.testing.assert_allclose(p[0, :, :, :3].sum(axis=-1), 1, rtol=1e-6)


def test_softmax_is_stable_for_huge_scores() -> None:
    q = np.full((1, 1, 1, 1), 1e4, np.float32)
    k = np.array([[[[1.0]], [[2.0]]]], np.float32)  # scores 1e4 and 2e4: exp would overflow unshifted
    out, probabilities = ops.dot_product_attention(Tensor(q), Tensor(k), Tensor(np.ones((1, 2, 1, 1), np.float32)),
                                                   1.0)
    assert probabilities.data.ravel().tolist() == [0.0, 1.0] and np.isfinite(out.data).all()


def test_packed_self_attention_equals_the_three_projections_apart() -> None:
    qkv = rng.normal(size=(BATCH, QUERIES, HEADS * (2 * KEY_DIM + VALUE_DIM))).astype(np.float32)
    width = HEADS * KEY_DIM
    q, k, v = (Tensor(np.ascontiguousarray(part).reshape(BATCH, QUERIES, HEADS, -1))
               for part in (qkv[..., :width], qkv[..., width:2 * width], qkv[..., 2 * width:]))
    apart = ops.dot_product_attention(q, k, v, 0.6, PADDING[:, :, :3])
    packed = ops.packed_self_attention(Tensor(qkv), HEADS, KEY_DIM, VALUE_DIM, 0.6, PADDING[:, :, :3])
    for one, other in zip(apart, packed):
        np.testing.assert_array_equal(one.data, other.data)


def _numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, mask: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Keras' attention written out on whole arrays: scaled q, every product, -1e9 where masked, softmax, zeros."""
    scores = np.einsum("bqhd,bkhd->bhqk", q * scale, k)
    filled = np.where(mask[:, None], scores, -1e9)
    e = np.exp(filled - filled.max(axis=-1, keepdims=True))
    p = np.where(mask[:, None], e / e.sum(axis=-1, keepdims=True), 0.0)
    return np.einsum("bhqk,bkhd->bqhd", p, v), p


def test_multiplying_only_the_mask_blocks_gives_what_the_whole_products_give() -> None:
    q, k, v = (rng.normal(size=(3, *a.shape[1:])) for a in _inputs())
    out, probabilities = ops.dot_product_attention(Tensor(q), Tensor(k), Tensor(v), 0.6, FRONT)
    expected_out, expected_p = _numpy_attention(q, k, v, 0.6, FRONT)
    np.testing.assert_allclose(probabilities.data, expected_p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.data, expected_out, rtol=1e-12, atol=1e-15)
    assert (out.data[2] == 0).all() and (out.data[0, 0] == 0).all()  # no valid step: exact zeros


def test_per_example_blocks_only_where_the_skipped_products_repay_the_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "PER_EXAMPLE_FLOPS", 3e6)  # the default
    small = [Tensor(a, requires_grad=True) for a in (rng.normal(size=(3, *a.shape[1:])) for a in _inputs())]
    blocks = ops.dot_product_attention(*small, 0.6, FRONT)[0].op.blocks
    assert blocks.tolist() == [[0, 3, 1, 4]] * 3  # a few pairs: the batch's bounding box for every example
    valid = np.zeros((2, 64), bool)
    valid[0], valid[1, -4:] = True, True
    large = [Tensor(rng.normal(size=(2, 64, 2, 128)).astype(np.float32), requires_grad=True) for _ in range(3)]
    blocks = ops.dot_product_attention(*large, 0.6, valid[:, :, None] & valid[:, None, :])[0].op.blocks
    assert blocks.tolist() == [[0, 64, 0, 64], [60, 64, 60, 64]]  # 4080 pairs of 3072 FLOPs skipped
