"""The self_attention op (projections, attention and output projection in one): gradients in float64 with padded,
uneven, causal and empty masks, dropout and no biases, and its values against the same layer in plain NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops import attention
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(43)
BATCH, STEPS, FEATURES, HEADS, KEY_DIM, VALUE_DIM, OUT = 3, 4, 3, 2, 2, 3, 2
WIDTH = HEADS * (2 * KEY_DIM + VALUE_DIM)
VALID = np.array([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]], bool)  # padded in front; the last: all padding
PADDED = VALID[:, :, None] & VALID[:, None, :]
UNEVEN = np.zeros((BATCH, STEPS, STEPS), bool)  # the queries' and the keys' steps differ
UNEVEN[0, 1:, 2:] = True
UNEVEN[0, 2, 3] = False
UNEVEN[1, :2] = True
CAUSAL = PADDED & np.tril(np.ones((STEPS, STEPS), bool))[None]
KEEP = (rng.random((BATCH, HEADS, STEPS, STEPS)) >= 0.3) / 0.7


@pytest.fixture(autouse=True, params=["per_example", "whole_batch"])
def block_strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with each example multiplied over its own mask block, and with the batch's bounding box
    (what small products get: dlcli/ops/attention.py's PER_EXAMPLE_FLOPS)."""
    monkeypatch.setattr(attention, "PER_EXAMPLE_FLOPS", 0.0 if request.param == "per_example" else float("inf"))
    return request.param


def _inputs(bias: bool = True) -> list[np.ndarray]:
    weights = [rng.normal(size=(FEATURES, WIDTH)), rng.normal(size=WIDTH) * 0.5,
               rng.normal(size=(HEADS * VALUE_DIM, OUT)), rng.normal(size=OUT) * 0.5]
    return [rng.normal(size=(BATCH, STEPS, FEATURES)), *(weights if bias else weights[::2])]


def _both(mask: np.ndarray | None, keep: np.ndarray | None = None, bias: bool = True):
    """A scalar of both outputs, so the probabilities' own gradient is checked too."""
    def fn(x: Tensor, qkv_kernel: Tensor, *rest: Tensor) -> Tensor:
        qkv_bias, out_kernel, out_bias = rest if bias else (None, rest[0], None)
        out, probabilities = ops.self_attention(x, qkv_kernel, qkv_bias, out_kernel, out_bias, HEADS, KEY_DIM,
                                                VALUE_DIM, 0.6, mask, keep)
        return (out * 0.5).sum() + (probabilities * probabilities).sum()
    return fn


CASES = {
    "self_attention": (_both(None), _inputs()),
    "self_attention_padded": (_both(PADDED), _inputs()),
    "self_attention_uneven_mask": (_both(UNEVEN), _inputs()),
    "self_attention_causal_dropout": (_both(CAUSAL, KEEP), _inputs()),
    "self_attention_no_bias": (_both(PADDED, bias=False), _inputs(bias=False)),
    "self_attention_output_only": (
        lambda x, *w: ops.self_attention(x, w[0], w[1], w[2], w[3], HEADS, KEY_DIM, VALUE_DIM, 0.6, UNEVEN)[0],
        _inputs()),
    "self_attention_scores_only": (
        lambda x, *w: ops.self_attention(x, w[0], w[1], w[2], w[3], HEADS, KEY_DIM, VALUE_DIM, 0.6, PADDED)[1],
        _inputs()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_self_attention_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def _numpy_self_attention(x: np.ndarray, qkv_kernel: np.ndarray, qkv_bias: np.ndarray, out_kernel: np.ndarray,
                          out_bias: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras' MultiHeadAttention of x over itself on whole arrays: every step projected, -1e9 where masked."""
    width = HEADS * KEY_DIM
    qkv = x @ qkv_kernel + qkv_bias
    q, k, v = (part.reshape(BATCH, STEPS, HEADS, -1) for part in
               (qkv[..., :width], qkv[..., width:2 * width], qkv[..., 2 * width:]))
    scores = np.einsum("bqhd,bkhd->bhqk", q * 0.6, k)
    filled = np.where(mask[:, None], scores, -1e9)
    e = np.exp(filled - filled.max(axis=-1, keepdims=True))
    p = np.where(mask[:, None], e / e.sum(axis=-1, keepdims=True), 0.0)
    attended = np.einsum("bhqk,bkhd->bqhd", p, v).reshape(BATCH, STEPS, -1)
    return attended @ out_kernel + out_bias, p


@pytest.mark.parametrize("mask", [PADDED, UNEVEN, CAUSAL, None], ids=["padded", "uneven", "causal", "none"])
def test_self_attention_computes_what_every_step_projected_computes(mask: np.ndarray | None) -> None:
    inputs = _inputs()
    out, probabilities = ops.self_attention(*(Tensor(a) for a in inputs[:2]), Tensor(inputs[2]), Tensor(inputs[3]),
                                            Tensor(inputs[4]), HEADS, KEY_DIM, VALUE_DIM, 0.6, mask)
    expected_out, expected_p = _numpy_self_attention(*inputs, np.ones((1, STEPS, STEPS), bool) if mask is None
                                                     else mask)
    np.testing.assert_allclose(probabilities.data, expected_p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.data, expected_out, rtol=1e-12, atol=1e-14)
    if mask is PADDED:  # a padded step attends to nothing: its output is the output bias
        np.testing.assert_array_equal(out.data[2], np.broadcast_to(inputs[4], (STEPS, OUT)))


def test_a_batch_of_padding_only_gives_the_output_bias_and_no_input_gradient() -> None:
    x, qkv_kernel, qkv_bias, out_kernel, out_bias = (Tensor(a, requires_grad=True) for a in _inputs())
    out, probabilities = ops.self_attention(x, qkv_kernel, qkv_bias, out_kernel, out_bias, HEADS, KEY_DIM,
                                            VALUE_DIM, 0.6, np.zeros((BATCH, STEPS, STEPS), bool))
    (out * out).sum().backward()
    np.testing.assert_array_equal(out.data, np.broadcast_to(out_bias.data, out.shape))
    assert (probabilities.data == 0).all() and (x.grad == 0).all() and (qkv_kernel.grad == 0).all()
    np.testing.assert_allclose(out_bias.grad, 2 * BATCH * STEPS * out_bias.data, rtol=1e-12)
