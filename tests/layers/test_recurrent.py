"""simple_rnn, lstm, gru and bidirectional: gradients, PyTorch's numbers, Keras' counts, shapes and masking."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli import ops
from dlcli.errors import SpecError
from dlcli.layers import Layer, create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients, check_param_gradients
from tests.layers.test_layers import build64

# right-padded, and one with a hole: a state carried across a gap
MASK = np.array([[True, True, True, True, True], [True, True, False, True, False]])


def _bi(inner: dict, merge_mode: str = "concat") -> dict:
    return {"type": "bidirectional", "layer": inner, "merge_mode": merge_mode}


# name -> (config, per-example input shape, expected output shape, training, input mask)
CASES = {
    "simple_rnn": ({"type": "simple_rnn", "units": 4}, (5, 3), (4,), False, None),
    "simple_rnn_sequences_masked_relu": ({"type": "simple_rnn", "units": 4, "return_sequences": True,
                                          "activation": "relu"}, (5, 3), (5, 4), False, MASK),
    "simple_rnn_dropout": ({"type": "simple_rnn", "units": 4, "dropout": 0.3, "recurrent_dropout": 0.4}, (5, 3),
                           (4,), True, None),
    "lstm": ({"type": "lstm", "units": 4}, (5, 3), (4,), False, None),
    "lstm_sequences_masked": ({"type": "lstm", "units": 4, "return_sequences": True}, (5, 3), (5, 4), False, MASK),
    "lstm_input_dropout": ({"type": "lstm", "units": 4, "dropout": 0.3}, (5, 3), (4,), True, None),
    "lstm_dropout_masked_no_bias": ({"type": "lstm", "units": 4, "dropout": 0.3, "recurrent_dropout": 0.3,
                                     "use_bias": False, "return_sequences": True}, (5, 3), (5, 4), True, MASK),
    "gru": ({"type": "gru", "units": 4}, (5, 3), (4,), False, None),
    "gru_sequences_masked": ({"type": "gru", "units": 4, "return_sequences": True}, (5, 3), (5, 4), False, MASK),
    "gru_dropout": ({"type": "gru", "units": 4, "dropout": 0.2, "recurrent_dropout": 0.3}, (5, 3), (4,), True,
                    MASK),
    "gru_reset_before": ({"type": "gru", "units": 4, "reset_after": False, "return_sequences": True}, (5, 3),
                         (5, 4), False, None),
    "bidirectional_concat_masked": (_bi({"type": "lstm", "units": 4, "return_sequences": True}), (5, 3), (5, 8),
                                    False, MASK),
    "bidirectional_sum": (_bi({"type": "gru", "units": 4}, "sum"), (5, 3), (4,), False, MASK),
    "bidirectional_mul_sequences": (_bi({"type": "simple_rnn", "units": 4, "return_sequences": True}, "mul"),
                                    (5, 3), (5, 4), False, None),
    "bidirectional_ave_dropout": (_bi({"type": "lstm", "units": 4, "dropout": 0.3, "recurrent_dropout": 0.2},
                                      "ave"), (5, 3), (4,), True, MASK),
}


def _caller(layer: Layer, training: bool, mask: np.ndarray | None):
    """layer(x) with the mask set on x, and dropout drawing the same masks in every pass."""
    inner = [layer.forward_layer, layer.backward_layer] if hasattr(layer, "forward_layer") else [layer]

    def call(t: Tensor) -> Tensor:
        for each in inner:
            each.rng = np.random.default_rng(7)
        t.mask = mask
        return layer(t, training=training)

    return call


@pytest.mark.parametrize("name", sorted(CASES))
def test_recurrent_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape, training, mask = CASES[name]
    layer, built = build64(config, in_shape)
    assert built == out_shape
    x = np.random.default_rng(5).normal(size=(2, *in_shape))
    call = _caller(layer, training, mask)
    check_op_gradients(call, [x])
    check_param_gradients(lambda: call(Tensor(x)), list(layer.params.values()))
    out = call(Tensor(x))
    assert out.shape == (2, *out_shape)
    assert out.mask is (mask if len(out_shape) == 2 else None)  # only a sequence keeps its steps' mask


@pytest.mark.parametrize("name", sorted(CASES))
def test_recurrent_spec_round_trips_through_model_dump(name: str) -> None:
    layer = create_layer(CASES[name][0])
    assert create_layer(layer.spec.model_dump()).spec == layer.spec


def _weights(k: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keras-layout weights for 3 features and 4 units, from cos/sin so the torch script can rebuild them."""
    kernel = np.cos(np.arange(3 * k * 4) + shift).reshape(3, k * 4) * 0.5
    recurrent = np.sin(np.arange(4 * k * 4) + shift).reshape(4, k * 4) * 0.5
    bias = np.linspace(-0.5, 0.5, 2 * k * 4).reshape(2, k * 4) + shift
    return kernel, recurrent, bias


def _load(layer: Layer, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> None:
    layer.params["kernel"].data[...] = kernel
    layer.params["recurrent_kernel"].data[...] = recurrent
    layer.params["bias"].data[...] = bias if layer.params["bias"].ndim == 2 else bias[0]


def _torch_input() -> Tensor:
    return Tensor((((np.arange(2 * 5 * 3).reshape(2, 5, 3) % 7) - 3) / 4.0).astype(np.float32))


# PyTorch 2.13.0 in float64 with the weights of _weights() converted: LSTM weight_ih = kernel.T, weight_hh =
# recurrent_kernel.T, bias_ih = bias[0], bias_hh = 0 (the gate order i, f, g, o is Keras'); GRU gates reordered
# from Keras' z, r, h to torch's r, z, n, bias_ih = bias[0], bias_hh = bias[1]; x = ((arange(30) % 7) - 3) / 4
TORCH_LSTM = [[[-0.02819286, 0.00114833, 0.005082, -0.03522326],
               [-0.08345823, -0.06112777, -0.0322002, -0.02012709],
               [-0.11847217, -0.19133291, -0.11493356, -0.02638458],
               [-0.09532047, -0.10381486, -0.06718866, -0.02693046],
               [-0.01832999, 0.01591839, -0.02216281, -0.14393946]],
              [[-0.03938796, -0.01701722, -0.00915419, -0.02421753],
               [-0.10677921, -0.09206732, -0.0462785, -0.00940836],
               [-0.07031969, -0.0322648, -0.01077263, -0.03307172],
               [-0.10609424, -0.07842676, -0.03764428, -0.0171959],
               [-0.12859412, -0.19998372, -0.11711213, -0.02430034]]]
TORCH_GRU = [[[-0.05722831, 0.37601598, 0.36834665, 0.15771495], [0.19940615, 0.24209452, 0.1493343, 0.00923752],
              [-0.08574781, 0.14166654, 0.29827666, 0.25461646], [0.11651089, 0.23465296, 0.2527499, 0.17419875],
              [-0.00159102, 0.00119141, 0.09330401, 0.23685013]],
             [[0.02233778, 0.24076973, 0.24109943, 0.12406756], [0.2301577, 0.08765867, -0.05902349, -0.10174391],
              [0.05197611, 0.38302525, 0.30856896, 0.08574811], [0.23597467, 0.24161735, 0.10609203, -0.04165487],
              [-0.07043826, 0.1306598, 0.27267804, 0.23440781]]]
# nn.LSTM(bidirectional=True) on pack_padded_sequence(x, lengths [5, 3]), reverse weights _weights(4, 0.25):
# sequence 1 after pad_packed_sequence (zeros where padded), and h_n (forward, backward) of each sequence
TORCH_BI_SEQUENCE_1 = [[-0.03938796, -0.01701722, -0.00915419, -0.02421753, -0.01620154, 0.03213478, 0.07002437,
                        0.06986063],
                       [-0.10677921, -0.09206732, -0.0462785, -0.00940836, -0.04285425, -0.0090971, 0.03796135,
                        0.062913],
                       [-0.07031969, -0.0322648, -0.01077263, -0.03307172, 0.01774906, 0.05662249, 0.063359,
                        0.01506825], [0.0] * 8, [0.0] * 8]
TORCH_BI_LAST = [[-0.01832999, 0.01591839, -0.02216281, -0.14393946, -0.00472914, 0.03499874, 0.0696153, 0.05416503],
                 [-0.07031969, -0.0322648, -0.01077263, -0.03307172, -0.01620154, 0.03213478, 0.07002437, 0.06986063]]


@pytest.mark.parametrize("cell,k,expected", [("lstm", 4, TORCH_LSTM), ("gru", 3, TORCH_GRU)])
def test_float32_outputs_match_pytorch(cell: str, k: int, expected: list) -> None:
    layer = create_layer({"type": cell, "units": 4, "return_sequences": True})
    layer.build((5, 3), np.random.default_rng(0))
    _load(layer, *_weights(k))
    np.testing.assert_allclose(layer(_torch_input()).data, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_masked_bidirectional_lstm_matches_pytorch_packed_sequences(return_sequences: bool) -> None:
    layer = create_layer(_bi({"type": "lstm", "units": 4, "return_sequences": return_sequences}))
    layer.build((5, 3), np.random.default_rng(0))
    _load(layer.forward_layer, *_weights(4))
    _load(layer.backward_layer, *_weights(4, 0.25))
    x = _torch_input()
    x.mask = np.arange(5) < np.array([[5], [3]])
    out = layer(x).data
    if return_sequences:
        np.testing.assert_allclose(out[1], TORCH_BI_SEQUENCE_1, rtol=0, atol=2e-6)
        np.testing.assert_allclose(out[0, :, :4], TORCH_LSTM[0], rtol=0, atol=2e-6)
    else:
        np.testing.assert_allclose(out, TORCH_BI_LAST, rtol=0, atol=2e-6)


def test_parameter_counts_shapes_and_names_are_keras_ones() -> None:
    rng = np.random.default_rng(0)
    chain = [({"type": "lstm", "units": 32}, (500, 32), (32,), 8320),
             ({"type": "gru", "units": 32}, (500, 32), (32,), 6336),
             ({"type": "gru", "units": 32, "reset_after": False}, (500, 32), (32,), 6240),
             ({"type": "simple_rnn", "units": 32}, (500, 32), (32,), 2080),
             ({"type": "lstm", "units": 16, "return_sequences": True}, (20, 8), (20, 16), 1600),
             ({"type": "simple_rnn", "units": 8, "use_bias": False}, (7, 3), (8,), 88),
             (_bi({"type": "lstm", "units": 32}), (500, 32), (64,), 16640),
             (_bi({"type": "gru", "units": 8, "return_sequences": True}, "sum"), (9, 4), (9, 8), 2 * 336)]
    for config, in_shape, out_shape, params in chain:
        layer = create_layer(config)
        assert layer.build(in_shape, rng) == out_shape, config
        assert layer.parameter_counts() == (params, 0), config
    gru = create_layer({"type": "gru", "units": 5, "name": "g"})
    gru.build((4, 3), rng)
    assert {name: t.shape for name, t in gru.weights().items()} == {
        "g/kernel": (3, 15), "g/recurrent_kernel": (5, 15), "g/bias": (2, 15)}
    bi = create_layer(_bi({"type": "lstm", "units": 2}), "bidirectional")
    bi.build((4, 3), rng)
    assert list(bi.weights()) == [f"bidirectional/{d}_lstm/{w}" for d in ("forward", "backward")
                                  for w in ("kernel", "recurrent_kernel", "bias")]
    assert type(bi).__name__ == "Bidirectional" and type(gru).__name__ == "GRU"


def test_initial_weights_follow_keras() -> None:
    layer = create_layer({"type": "lstm", "units": 6})
    layer.build((4, 3), np.random.default_rng(0))
    bias = layer.params["bias"].data
    assert bias.dtype == np.float32 and (bias[6:12] == 1).all() and not bias[:6].any() and not bias[12:].any()
    recurrent = layer.params["recurrent_kernel"].data  # orthogonal (6, 24): orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(6), atol=1e-5)
    assert all(t.data.flags.c_contiguous for t in layer.params.values())  # optimizers update them in place
    plain = create_layer({"type": "lstm", "units": 6, "unit_forget_bias": False})
    plain.build((4, 3), np.random.default_rng(0))
    assert not plain.params["bias"].data.any()


@pytest.mark.parametrize("config", [{"type": "lstm", "units": 3}, {"type": "gru", "units": 3},
                                    {"type": "simple_rnn", "units": 3}, _bi({"type": "lstm", "units": 3}, "sum")])
def test_padded_sequence_gives_the_unpadded_last_output(config: dict) -> None:
    layer = create_layer(config)
    layer.build((7, 2), np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(1, 4, 2)).astype(np.float32)
    padded = Tensor(np.concatenate([x, np.full((1, 3, 2), 9.0, np.float32)], axis=1))  # junk in the padding
    padded.mask = np.array([[True] * 4 + [False] * 3])
    np.testing.assert_allclose(layer(padded).data, layer(Tensor(x)).data, rtol=1e-6, atol=1e-7)


def test_masked_steps_output_the_carried_state_and_zeros_in_bidirectional() -> None:
    layer = create_layer({"type": "gru", "units": 3, "return_sequences": True})
    layer.build((5, 2), np.random.default_rng(0))
    x = Tensor(np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32))
    x.mask = MASK
    out = layer(x)
    np.testing.assert_array_equal(out.data[1, 2], out.data[1, 1])  # Keras: the previous output carried over
    assert out.mask is MASK
    bi = create_layer(_bi({"type": "gru", "units": 3, "return_sequences": True}))
    bi.build((5, 2), np.random.default_rng(0))
    merged = bi(x).data
    assert not merged[1, [2, 4]].any() and merged[1, [0, 1, 3]].all()  # Keras zeroes both halves there


def test_dropout_is_off_in_inference_and_seeded_in_training() -> None:
    layer = create_layer({"type": "lstm", "units": 4, "dropout": 0.5, "recurrent_dropout": 0.5})
    layer.build((6, 3), np.random.default_rng(0))
    plain = create_layer({"type": "lstm", "units": 4})
    plain.build((6, 3), np.random.default_rng(0))
    x = Tensor(np.random.default_rng(3).normal(size=(5, 6, 3)).astype(np.float32))
    np.testing.assert_array_equal(layer(x).data, plain(x).data)
    layer.rng = np.random.default_rng(11)
    first = layer(x, training=True).data
    assert not np.allclose(first, plain(x).data)
    layer.rng = np.random.default_rng(11)
    np.testing.assert_array_equal(first, layer(x, training=True).data)
    # Keras: with recurrent dropout, one mask per gate for the input and for the state
    inputs, state = layer._dropout_masks(5, 3)
    assert inputs.shape == (4, 5, 3) and state.shape == (4, 5, 4)
    assert set(np.unique(state)) <= {0.0, 2.0}
    only_inputs = create_layer({"type": "gru", "units": 4, "dropout": 0.5})
    only_inputs.build((6, 3), np.random.default_rng(0))
    inputs, state = only_inputs._dropout_masks(5, 3)
    assert inputs.shape == (1, 5, 3) and state is None


def test_wrong_rank_names_the_layer_and_suggests_a_reshape() -> None:
    layer = create_layer({"type": "lstm", "units": 8})
    layer.key = "model.layers[1]"
    with pytest.raises(SpecError, match=r"model.layers\[1\]: expected rank 3 \(batch, timesteps, features\), found "
                                        r"rank 2 \(batch, 784\); add a reshape layer first, e\.g\. type = "
                                        r"\"reshape\", target_shape = \[784, 1\]"):
        layer.connect([(784,)], np.random.default_rng(0))
    bi = create_layer(_bi({"type": "gru", "units": 8}))
    bi.key = "model.layers[2]"
    with pytest.raises(SpecError, match=r"model.layers\[2\].layer: expected rank 3 .* target_shape = \[28, 28\]"):
        bi.build((28, 28, 1), np.random.default_rng(0))


def test_bidirectional_takes_only_recurrent_layers_and_checks_their_keys() -> None:
    with pytest.raises(ValidationError, match="simple_rnn"):
        create_layer(_bi({"type": "dense", "units": 3}))
    with pytest.raises(ValidationError, match="unit"):
        create_layer(_bi({"type": "lstm", "unit": 3}))
    with pytest.raises(ValidationError, match="merge_mode"):
        create_layer(_bi({"type": "lstm", "units": 3}, "max"))
    with pytest.raises(ValidationError, match="activation"):
        create_layer({"type": "gru", "units": 3, "activation": "softmax"})


@pytest.mark.parametrize("config", [{"type": "lstm", "units": 8}, {"type": "gru", "units": 8},
                                    {"type": "simple_rnn", "units": 8}, _bi({"type": "gru", "units": 4}, "ave")])
def test_masked_sequences_are_learned_by_gradient_descent(config: dict) -> None:
    # the label is the sign of the first step; lengths vary, and the padding holds junk the model must not read
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6, 2)).astype(np.float32)
    mask = np.arange(6) < rng.integers(2, 7, size=(128, 1))
    x[~mask] = 5.0
    y = (x[:, :1, 0] > 0).astype(np.float32)
    layer, dense = create_layer(config), create_layer({"type": "dense", "units": 1})
    dense.build(layer.build((6, 2), np.random.default_rng(1)), np.random.default_rng(2))
    params = [*layer.params.values(), *dense.params.values()]
    inputs = Tensor(x)
    inputs.mask = mask
    for _ in range(300):
        for p in params:
            p.grad = None
        ops.sigmoid_binary_crossentropy(dense(layer(inputs, training=True)), y).backward()
        for p in params:
            p.data -= 0.5 * p.grad
    accuracy = ((dense(layer(inputs)).data > 0) == (y > 0)).mean()
    assert accuracy >= 0.97
