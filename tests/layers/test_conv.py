"""conv1d and conv2d: gradients with odd sizes, strides, both paddings and dilation; PyTorch's numbers; shapes."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli.errors import SpecError
from dlcli.layers import create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients, check_param_gradients
from tests.layers.test_layers import build64

# type_variant -> (config, per-example input shape, expected output shape)
CASES = {
    "conv2d": ({"type": "conv2d", "filters": 3, "kernel_size": [3, 2]}, (7, 5, 2), (5, 4, 3)),
    "conv2d_same_stride2": ({"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"},
                            (7, 6, 3), (4, 3, 2)),
    "conv2d_same_stride2_even_kernel": ({"type": "conv2d", "filters": 2, "kernel_size": 2, "strides": [2, 1],
                                         "padding": "same"}, (5, 4, 1), (3, 4, 2)),
    "conv2d_dilation": ({"type": "conv2d", "filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same",
                         "activation": "tanh"}, (7, 6, 2), (7, 6, 2)),
    "conv2d_relu_no_bias": ({"type": "conv2d", "filters": 4, "kernel_size": 1, "use_bias": False,
                             "activation": "relu"}, (3, 3, 3), (3, 3, 4)),
    "conv2d_sigmoid_valid_stride": ({"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": [2, 3],
                                     "activation": "sigmoid"}, (8, 9, 1), (3, 3, 2)),
    "conv1d": ({"type": "conv1d", "filters": 3, "kernel_size": 3}, (9, 2), (7, 3)),
    "conv1d_same_stride2": ({"type": "conv1d", "filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"},
                            (9, 3), (5, 2)),
    "conv1d_causal_dilation": ({"type": "conv1d", "filters": 2, "kernel_size": 3, "dilation_rate": 2,
                                "padding": "causal", "activation": "relu"}, (8, 2), (8, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_gradient_matches_finite_differences(name: str) -> None:
    config, in_shape, out_shape = CASES[name]
    layer, built = build64(config, in_shape)
    assert built == out_shape
    x = np.random.default_rng(3).normal(size=(2, *in_shape))
    check_op_gradients(lambda t: layer(t), [x])
    check_param_gradients(lambda: layer(Tensor(x)), list(layer.params.values()))
    assert layer(Tensor(x)).shape == (2, *out_shape)


def test_conv2d_matches_pytorch() -> None:
    # torch.nn.functional.conv2d(F.pad(x.permute(0, 3, 1, 2), (0, 1, 1, 1)), kernel.permute(3, 2, 0, 1), bias,
    # stride=2), torch 2.13.0: the pad is Keras' "same" for 5x4 inputs and stride 2 (height 1+1, width 0+1,
    # not PyTorch's symmetric padding=1); x = arange(80)/10 - 3, kernel = arange(54)/20 - 0.8
    x = (np.arange(2 * 5 * 4 * 2, dtype=np.float32) / 10 - 3).reshape(2, 5, 4, 2)
    layer = create_layer({"type": "conv2d", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"})
    layer.build((5, 4, 2), np.random.default_rng(0))
    layer.params["kernel"].data[...] = (np.arange(54, dtype=np.float32) / 20 - 0.8).reshape(3, 3, 2, 3)
    layer.params["bias"].data[...] = [0.1, -0.2, 0.3]
    out = layer(Tensor(x)).data
    assert out.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(out[0, :, :, 0], TORCH_CONV2D_N0_F0, rtol=1e-5)
    np.testing.assert_allclose(out[1, :, :, 2], TORCH_CONV2D_N1_F2, rtol=1e-5)


TORCH_CONV2D_N0_F0 = [[-23.3, -11.02], [-0.305, 2.77], [2.8, 1.34]]
TORCH_CONV2D_N1_F2 = [[23.28, 15.54], [39.225, 22.35], [9.06, 1.02]]


def test_conv1d_matches_pytorch_causal() -> None:
    # torch.nn.functional.conv1d(F.pad(x.permute(0, 2, 1), (2, 0)), kernel.permute(2, 1, 0), bias), torch 2.13.0
    x = (np.arange(1 * 6 * 2, dtype=np.float32) / 5 - 1).reshape(1, 6, 2)
    layer = create_layer({"type": "conv1d", "filters": 2, "kernel_size": 3, "padding": "causal"})
    layer.build((6, 2), np.random.default_rng(0))
    layer.params["kernel"].data[...] = (np.arange(12, dtype=np.float32) / 10 - 0.5).reshape(3, 2, 2)
    layer.params["bias"].data[...] = [0.5, -0.5]
    np.testing.assert_allclose(layer(Tensor(x)).data[0], TORCH_CONV1D_CAUSAL, rtol=1e-5, atol=1e-6)


TORCH_CONV1D_CAUSAL = [[-0.2, -1.38], [0.14, -1.14], [1.2, -0.1], [1.2, 0.14], [1.2, 0.38], [1.2, 0.62]]


def test_conv_shapes_and_counts_are_keras_ones() -> None:
    rng = np.random.default_rng(0)
    chain = [({"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"}, (28, 28, 1), (26, 26, 32),
              320),
             ({"type": "conv2d", "filters": 64, "kernel_size": 3}, (13, 13, 32), (11, 11, 64), 18496),
             ({"type": "conv2d", "filters": 128, "kernel_size": 3}, (5, 5, 64), (3, 3, 128), 73856),
             ({"type": "conv1d", "filters": 16, "kernel_size": 5, "padding": "same"}, (100, 8), (100, 16), 656)]
    for config, in_shape, out_shape, params in chain:
        layer = create_layer(config)
        assert layer.build(in_shape, rng) == out_shape
        assert layer.parameter_counts() == (params, 0)
    conv1d = create_layer({"type": "conv1d", "filters": 4, "kernel_size": 3, "name": "c"})
    conv1d.build((10, 2), rng)
    assert conv1d.params["kernel"].shape == (3, 2, 4) and list(conv1d.weights()) == ["c/kernel", "c/bias"]


def test_conv_input_errors_name_the_layer() -> None:
    layer = create_layer({"type": "conv2d", "filters": 3, "kernel_size": 3})
    layer.key = "model.layers[0]"
    with pytest.raises(SpecError, match=r"model.layers\[0\]: expected rank 4 \(batch, height, width, channels\), "
                                        r"found rank 2 \(batch, 784\); add a reshape layer first, e\.g\. type = "
                                        r"\"reshape\", target_shape = \[28, 28, 1\]"):
        layer.connect([(784,)], np.random.default_rng(0))
    with pytest.raises(SpecError, match="does not fit inputs of 2x2"):
        create_layer({"type": "conv2d", "filters": 3, "kernel_size": 3}).build((2, 2, 1), np.random.default_rng(0))
    with pytest.raises(ValidationError, match="cannot be combined"):
        create_layer({"type": "conv2d", "filters": 3, "kernel_size": 3, "strides": 2, "dilation_rate": 2})


def test_conv2d_algorithm_key_picks_the_winograd_path_where_it_fits() -> None:
    """algorithm = "winograd", "winograd_3x3", "winograd_4x4" (or "auto", the default, on a layer it suits:
    here F(4x4)) compute the same convolution to float32 rounding; a layer Winograd cannot compute is a spec
    error naming the key."""
    x = np.random.default_rng(5).normal(size=(2, 12, 11, 16)).astype(np.float32)
    outputs, tiles = {}, {}
    for algorithm in (None, "im2col", "winograd", "winograd_3x3", "winograd_4x4", "auto"):
        config = {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}
        layer = create_layer(config if algorithm is None else {**config, "algorithm": algorithm})
        layer.build((12, 11, 16), np.random.default_rng(0))
        out = layer(Tensor(x, requires_grad=True))
        outputs[algorithm], tiles[algorithm] = out.data, out.op.tile  # the Winograd tile taken, None: im2col
    assert tiles == {None: 4, "im2col": None, "winograd": 2, "winograd_3x3": 3, "winograd_4x4": 4, "auto": 4}
    np.testing.assert_array_equal(outputs[None], outputs["auto"])
    for algorithm, tolerance in (("winograd", 2e-6), ("winograd_3x3", 5e-6), ("winograd_4x4", 1e-5)):
        np.testing.assert_allclose(outputs[algorithm], outputs["im2col"], rtol=0,
                                   atol=tolerance * np.abs(outputs[None]).max())
    small = create_layer({"type": "conv2d", "filters": 8, "kernel_size": 3})  # 3 input channels: auto takes im2col
    small.build((10, 9, 3), np.random.default_rng(0))
    assert small(Tensor(x[..., :3])).op.cols is not None
    with pytest.raises(ValidationError, match=r"algorithm = \"winograd\" computes 3x3 kernels with strides 1"):
        create_layer({"type": "conv2d", "filters": 3, "kernel_size": 3, "strides": 2, "algorithm": "winograd"})
    with pytest.raises(ValidationError, match=r"algorithm = \"winograd_4x4\" computes 3x3 kernels with strides 1"):
        create_layer({"type": "conv2d", "filters": 3, "kernel_size": 5, "algorithm": "winograd_4x4"})
