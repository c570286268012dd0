"""multi_head_attention, layer_normalization, positional_embedding and transformer_encoder: gradients in float64
(masks, causal masks, several heads, value_dim != key_dim), Keras 3.15.1's numbers, weights and masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.layers import Layer, create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients, check_param_gradients
from tests.layers import keras_values as keras
from tests.layers.keras_values import wave

rng = np.random.default_rng(81)
QUERY_MASK = np.array([[True, True, False], [True, True, True]])
VALUE_MASK = np.array([[True, True, True, False], [True, True, False, False]])


def _built(config: dict[str, Any], in_shapes: list[tuple[int, ...]]) -> Layer:
    """A layer connected to per-example in_shapes, its weights in float64 for gradient checks."""
    layer = create_layer(config)
    layer.connect(in_shapes, np.random.default_rng(0))
    for param in layer.params.values():
        param.data = param.data.astype(np.float64) + rng.normal(scale=0.1, size=param.shape)  # biases off zero
    return layer


def _masked(array: np.ndarray, mask: np.ndarray) -> Tensor:
    t = Tensor(array)
    t.mask = mask
    return t


# name: (config, per-example input shapes, step masks of the inputs (or None), training)
CASES: dict[str, tuple[dict[str, Any], list[tuple[int, ...]], list[np.ndarray | None], bool]] = {
    "multi_head_attention": ({"type": "multi_head_attention", "num_heads": 2, "key_dim": 3},
                             [(3, 4)], [None], False),
    "multi_head_attention_padding_masks_value_dim_key": (
        {"type": "multi_head_attention", "num_heads": 2, "key_dim": 3, "value_dim": 2, "output_shape": 5},
        [(3, 4), (4, 5), (4, 6)], [QUERY_MASK, VALUE_MASK, VALUE_MASK], False),
    "multi_head_attention_causal_three_heads_no_bias": (
        {"type": "multi_head_attention", "num_heads": 3, "key_dim": 2, "use_causal_mask": True, "use_bias": False},
        [(4, 3)], [None], False),
    "multi_head_attention_dropout": ({"type": "multi_head_attention", "num_heads": 2, "key_dim": 2,
                                      "dropout": 0.3}, [(3, 4), (4, 4)], [None, VALUE_MASK], True),
    "layer_normalization": ({"type": "layer_normalization"}, [(3, 5)], [None], False),
    "layer_normalization_two_axes_no_center": ({"type": "layer_normalization", "axis": [1, 2], "center": False},
                                               [(3, 4)], [None], False),
    "transformer_encoder": ({"type": "transformer_encoder", "embed_dim": 4, "dense_dim": 6, "num_heads": 2},
                            [(4, 4)], [VALUE_MASK], False),
    "transformer_encoder_dropout_gelu": ({"type": "transformer_encoder", "embed_dim": 4, "dense_dim": 3,
                                          "num_heads": 1, "dropout": 0.2, "activation": "gelu", "key_dim": 2},
                                         [(3, 4)], [None], True),
    # integer ids: only the tables get gradients
    "positional_embedding": ({"type": "positional_embedding", "sequence_length": 5, "input_dim": 6,
                              "output_dim": 3}, [(4,)], [None], False),
    "positional_embedding_sinusoidal": ({"type": "positional_embedding", "sequence_length": 5, "input_dim": 6,
                                         "output_dim": 4, "positions": "sinusoidal"}, [(4,)], [None], False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_gradient_matches_finite_differences(name: str) -> None:
    config, shapes, masks, training = CASES[name]
    layer = _built(config, shapes)
    arrays = [rng.integers(0, config["input_dim"], size=(2, *shape)) if "input_dim" in config
              else rng.normal(size=(2, *shape)) for shape in shapes]

    def through(*inputs: Tensor) -> Tensor:
        for t, mask in zip(inputs, masks):
            t.mask = mask
        if hasattr(layer, "rng"):
            layer.rng = np.random.default_rng(7)  # the same dropout masks in every pass
        out = layer(*inputs, training=training)
        return out[0] if isinstance(out, tuple) else out

    check_op_gradients(through, arrays)
    check_param_gradients(lambda: through(*[Tensor(a) for a in arrays]), list(layer.params.values()))


def test_attention_scores_port_has_its_own_gradient() -> None:
    layer = _built({"type": "multi_head_attention", "num_heads": 2, "key_dim": 2, "return_attention_scores": True},
                   [(3, 4), (4, 4)])
    assert layer.extra_outputs() == {"attention_scores": (2, 3, 4)}
    query, value = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 4))

    def scores(q: Tensor, v: Tensor) -> Tensor:
        v.mask = VALUE_MASK
        return layer(q, v)[1]

    check_op_gradients(scores, [query, value])


def _keras_weights(layer: Layer, scale: float, phase_step: float) -> None:
    for i, param in enumerate(layer.params.values()):  # Keras' weight order: query, key, value, output
        param.data[...] = wave(param.shape, scale, phase_step * (i + 1))


def test_multi_head_attention_with_padding_masks_matches_keras() -> None:
    layer = create_layer({"type": "multi_head_attention", "num_heads": 2, "key_dim": 3, "value_dim": 2,
                          "return_attention_scores": True})
    layer.connect([(3, 4), (4, 5), (4, 6)], np.random.default_rng(0))
    assert [(name, t.shape) for name, t in layer.params.items()] == [
        ("query/kernel", (4, 2, 3)), ("query/bias", (2, 3)), ("key/kernel", (6, 2, 3)), ("key/bias", (2, 3)),
        ("value/kernel", (5, 2, 2)), ("value/bias", (2, 2)), ("attention_output/kernel", (2, 2, 4)),
        ("attention_output/bias", (4,))]  # Keras' names, shapes and order
    _keras_weights(layer, 0.6, 0.1)
    out, scores = layer(_masked(wave((2, 3, 4)), QUERY_MASK), _masked(wave((2, 4, 5), 1.0, 1.0), VALUE_MASK),
                        _masked(wave((2, 4, 6), 1.0, 2.0), VALUE_MASK))
    np.testing.assert_allclose(out.data, keras.MHA_MASKED_OUTPUT, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.data, keras.MHA_MASKED_SCORES, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.mask, QUERY_MASK)  # Keras hands the query's mask on


def test_causal_self_attention_matches_keras() -> None:
    layer = create_layer({"type": "multi_head_attention", "num_heads": 2, "key_dim": 2, "output_shape": 3,
                          "use_causal_mask": True, "return_attention_scores": True})
    layer.connect([(4, 4)], np.random.default_rng(0))  # one input: query = value = key
    _keras_weights(layer, 0.6, 0.2)
    out, scores = layer(Tensor(wave((1, 4, 4), 1.0, 0.5)))
    np.testing.assert_allclose(out.data, keras.MHA_CAUSAL_OUTPUT, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.data, keras.MHA_CAUSAL_SCORES, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,axis,epsilon,shape", [("LN_DEFAULT", -1, 1e-3, (5,)),
                                                     ("LN_TWO_AXES", [1, 2], 1e-5, (3, 5))])
def test_layer_normalization_matches_keras(name: str, axis: Any, epsilon: float, shape: tuple[int, ...]) -> None:
    layer = create_layer({"type": "layer_normalization", "axis": axis, "epsilon": epsilon})
    layer.build((3, 5), np.random.default_rng(0))
    assert list(layer.params) == ["gamma", "beta"] and layer.params["gamma"].shape == shape
    layer.params["gamma"].data[...] = wave(shape, 1.0, 1.0) + 1.0
    layer.params["beta"].data[...] = wave(shape, 0.5, 2.0)
    np.testing.assert_allclose(layer(Tensor(wave((2, 3, 5), 2.0) + 0.5)).data, getattr(keras, name), rtol=1e-5,
                               atol=1e-6)


def test_layer_normalization_refuses_the_batch_axis() -> None:
    layer = create_layer({"type": "layer_normalization", "axis": 0})
    with pytest.raises(SpecError, match="axis 0 does not name distinct feature axes"):
        layer.build((3, 5), np.random.default_rng(0))


def test_multi_head_attention_counts_and_refuses_like_keras() -> None:
    layer = create_layer({"type": "multi_head_attention", "num_heads": 2, "key_dim": 256})
    layer.connect([(200, 256)], np.random.default_rng(0))
    # the book's encoder: 4 * 256 * 2 * 256 kernels + 3 * 2 * 256 + 256 biases = 526,080 (Keras' summary)
    assert layer.parameter_counts() == (526_080, 0)
    with pytest.raises(SpecError, match="the key and the value must have the same number of steps, got 5 and 4"):
        create_layer({"type": "multi_head_attention", "num_heads": 1, "key_dim": 2}).connect(
            [(3, 4), (4, 4), (5, 4)], np.random.default_rng(0))
    with pytest.raises(SpecError, match=r"expected rank 3 \(batch, steps, channels\)"):
        create_layer({"type": "multi_head_attention", "num_heads": 1, "key_dim": 2}).connect(
            [(3, 4, 2)], np.random.default_rng(0))


def test_positional_embedding_adds_positions_and_passes_the_padding_mask_on() -> None:
    layer = create_layer({"type": "positional_embedding", "sequence_length": 6, "input_dim": 10, "output_dim": 3})
    assert layer.build((5,), np.random.default_rng(0)) == (5, 3)
    assert list(layer.weights()) == ["positional_embedding/token_embeddings/embeddings",
                                     "positional_embedding/position_embeddings/embeddings"]
    ids = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]])
    out = layer(Tensor(ids))
    tokens, positions = layer.params["token_embeddings/embeddings"].data, \
        layer.params["position_embeddings/embeddings"].data
    np.testing.assert_allclose(out.data, tokens[ids] + positions[:5], rtol=1e-7)
    np.testing.assert_array_equal(out.mask, ids != 0)
    with pytest.raises(SpecError, match="at most sequence_length = 6 ids"):
        layer.build((7,), np.random.default_rng(0))


def test_sinusoidal_positions_follow_vaswani_and_have_no_weights() -> None:
    layer = create_layer({"type": "positional_embedding", "sequence_length": 8, "input_dim": 5, "output_dim": 4,
                          "positions": "sinusoidal", "mask_zero": False})
    layer.build((3,), np.random.default_rng(0))
    assert list(layer.weights()) == ["positional_embedding/token_embeddings/embeddings"]
    out = layer(Tensor(np.zeros((1, 3), np.int64)))
    position = 2
    expected = [np.sin(position), np.cos(position), np.sin(position / 100), np.cos(position / 100)]  # 10000^(2i/4)
    np.testing.assert_allclose(out.data[0, 2] - layer.params["token_embeddings/embeddings"].data[0], expected,
                               rtol=1e-6)
    assert out.mask is None


def test_transformer_encoder_is_the_books_block() -> None:
    block = create_layer({"type": "transformer_encoder", "name": "encoder", "embed_dim": 256, "dense_dim": 32,
                          "num_heads": 2})
    block.connect([(600, 256)], np.random.default_rng(0))
    # Keras' summary of the book's TransformerEncoder(256, 32, 2): 543,776 parameters
    assert block.parameter_counts() == (526_080 + (256 * 32 + 32) + (32 * 256 + 256) + 2 * 512, 0) == (543_776, 0)
    assert "encoder/attention/query/kernel" in block.weights() and "encoder/layernorm_2/beta" in block.weights()
    x = Tensor(rng.normal(size=(2, 600, 256)).astype(np.float32))
    mask = np.zeros((2, 600), bool)
    mask[:, :10] = True
    x.mask = mask
    out = block(x)
    assert out.mask is mask and out.dtype == np.float32
    # written out by hand from its sublayers, as the book's call() does
    attended = block.attention(x)
    projected_in = block.norm_1(x + attended)
    expected = block.norm_2(projected_in + block.dense_2(block.dense_1(projected_in)))
    np.testing.assert_array_equal(out.data, expected.data)
    with pytest.raises(SpecError, match="embed_dim = 8, but its input has 256 features"):
        create_layer({"type": "transformer_encoder", "embed_dim": 8, "dense_dim": 4, "num_heads": 1}).connect(
            [(5, 256)], np.random.default_rng(0))


def test_the_block_written_out_as_graph_nodes_computes_the_same() -> None:
    from pathlib import Path

    from dlcli.graph import build_model
    from dlcli.spec.load import load_spec

    specs = Path(__file__).resolve().parents[2] / "specs"
    block_spec, graph_spec = load_spec(specs / "text_transformer.toml"), load_spec(specs / "text_transformer_graph.toml")
    block = build_model(block_spec.model, np.random.default_rng(0), block_spec)
    graph = build_model(graph_spec.model, np.random.default_rng(1), graph_spec)
    renamed = {"positional_embedding/": "embedding/", "transformer_encoder/attention/": "attention/",
               "transformer_encoder/layernorm_1/": "norm_1/", "transformer_encoder/layernorm_2/": "norm_2/",
               "transformer_encoder/dense_proj/dense_1/": "projection_2/",
               "transformer_encoder/dense_proj/dense/": "projection_1/", "dense/": "sentiment/"}
    graph_weights = graph.parameters()
    for name, weight in block.parameters().items():
        prefix = next(p for p in renamed if name.startswith(p))
        graph_weights[renamed[prefix] + name.removeprefix(prefix)].data[...] = weight.data
    ids = rng.integers(1, 100, (4, 32))
    ids[:, :12] = 0  # padding in front: masked in both
    outputs = [model({next(iter(model.inputs)): Tensor(ids)})[next(iter(model.outputs))] for model in (block, graph)]
    np.testing.assert_array_equal(outputs[0].data, outputs[1].data)
    for model, out in zip((block, graph), outputs):
        out.sum().backward()
    np.testing.assert_array_equal(block.parameters()["transformer_encoder/attention/query/kernel"].grad,
                                  graph.parameters()["attention/query/kernel"].grad)


def test_a_graph_node_hands_its_attention_scores_on_through_a_port() -> None:
    """The attention_scores port of a graph node, as the recurrent layers' state ports: named before the layer is
    connected (the graph collects port names first), with its shape once it is."""
    from dlcli.graph import build_model
    from dlcli.spec.models import ModelSpec

    spec = ModelSpec.model_validate({
        "inputs": {"tokens": {"shape": [5, 4]}},
        "nodes": {"attention": {"type": "multi_head_attention", "num_heads": 2, "key_dim": 3,
                                "return_attention_scores": True, "inputs": ["tokens", "tokens"]},
                  "scores": {"type": "flatten", "input": "attention.attention_scores"},
                  "pooled": {"type": "flatten", "input": "attention"},
                  "joined": {"type": "concatenate", "inputs": ["pooled", "scores"]},
                  "out": {"type": "dense", "units": 1, "input": "joined"}},
        "outputs": {"out": {"loss": "mse"}}})
    model = build_model(spec, np.random.default_rng(0))
    assert model.shapes["attention.attention_scores"] == (2, 5, 5)
    x = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    out = model({"tokens": Tensor(x)})["out"]
    assert out.data.shape == (3, 1) and np.isfinite(out.data).all()
