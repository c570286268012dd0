"""The conv2d op: gradients to input, kernel and bias for each fused activation and geometry."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops.conv import geometry
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(12)


def _case(shape: tuple[int, int, int], kernel: tuple[int, int], filters: int, strides=(1, 1), dilation=(1, 1),
          padding: str = "valid", activation: str = "linear", algorithm: str = "auto"):
    g = geometry(shape[0], shape[1], kernel, strides, dilation, padding)
    inputs = [rng.normal(size=(2, *shape)), rng.normal(size=(*kernel, shape[2], filters)) * 0.5,
              rng.normal(size=filters) + (0.3 if activation == "relu" else 0.0)]
    return (lambda x, w, b: ops.conv2d(x, w, b, g, activation, algorithm)), inputs


CASES = {
    "conv2d": _case((5, 4, 2), (3, 2), 3),
    "conv2d_same_strided": _case((6, 5, 2), (3, 3), 2, strides=(2, 2), padding="same"),
    "conv2d_dilated_relu": _case((7, 7, 1), (3, 3), 2, dilation=(2, 2), padding="same", activation="relu"),
    "conv2d_tanh": _case((4, 4, 3), (2, 2), 2, activation="tanh"),
    # one input channel: im2col by kernel tap (kernels.im2col_by_tap), strided, padded, relu
    "conv2d_one_channel_same_strided_relu": _case((7, 6, 1), (3, 3), 4, strides=(2, 2), padding="same",
                                                  activation="relu"),
    # the Winograd path (forced: auto takes it from 16 channels up), odd and even sizes, both paddings
    "conv2d_winograd_relu": _case((6, 7, 3), (3, 3), 2, activation="relu", algorithm="winograd"),
    "conv2d_winograd_same_tanh": _case((5, 4, 2), (3, 3), 3, padding="same", activation="tanh", algorithm="winograd"),
    # F(3x3) and F(4x4) (winograd_separable's two 1-D passes): one tile and several, edges inside and past them
    "conv2d_winograd_3x3_relu": _case((5, 5, 3), (3, 3), 2, activation="relu", algorithm="winograd_3x3"),
    "conv2d_winograd_3x3_same_tanh": _case((7, 4, 2), (3, 3), 3, padding="same", activation="tanh",
                                           algorithm="winograd_3x3"),
    "conv2d_winograd_4x4_relu": _case((9, 7, 3), (3, 3), 2, activation="relu", algorithm="winograd_4x4"),
    "conv2d_winograd_4x4_same_tanh": _case((6, 5, 2), (3, 3), 3, padding="same", activation="tanh",
                                           algorithm="winograd_4x4"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv2d_op_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_conv2d_computes_only_the_activations_its_kernels_have(activation: str) -> None:
    fn, inputs = _case((4, 5, 2), (1, 3), 2)
    g = geometry(4, 5, (1, 3), (1, 1), (1, 1), "valid")
    with pytest.raises(ValueError, match=f"conv2d computes linear, relu or tanh itself, not '{activation}'"):
        ops.conv2d(*[Tensor(a) for a in inputs], g, activation)


def test_conv2d_takes_winograd_only_for_3x3_stride_1_kernels() -> None:
    g = geometry(6, 6, (3, 3), (2, 2), (1, 1), "same")
    inputs = [Tensor(a) for a in (np.zeros((1, 6, 6, 2)), np.zeros((3, 3, 2, 2)), np.zeros(2))]
    for algorithm in ("winograd", "winograd_3x3", "winograd_4x4"):
        with pytest.raises(ValueError, match="Winograd convolution takes 3x3 kernels with stride 1"):
            ops.conv2d(*inputs, g, algorithm=algorithm)


@pytest.mark.parametrize("shape,kernel,strides,dilation,padding,activation", [
    ((7, 6), (3, 3), (2, 2), (1, 1), "same", "relu"), ((6, 5), (3, 2), (1, 1), (2, 1), "valid", "tanh"),
    ((5, 5), (3, 3), (1, 1), (1, 1), "same", "linear")])
def test_one_channel_conv2d_without_input_gradient_matches_finite_differences(shape, kernel, strides, dilation,
                                                                              padding, activation) -> None:
    # a first layer: its input is a constant, so the backward is the fused 1-channel kernel (no cols, no GEMM)
    g = geometry(*shape, kernel, strides, dilation, padding)
    x = Tensor(rng.normal(size=(3, *shape, 1)))
    w, b = rng.normal(size=(*kernel, 1, 4)) * 0.5, rng.normal(size=4) + (0.3 if activation == "relu" else 0.0)
    check_op_gradients(lambda w, b: ops.conv2d(x, w, b, g, activation, "im2col"), [w, b])
    out = ops.conv2d(x, Tensor(w, requires_grad=True), Tensor(b), g, activation, "im2col")
    assert out.op is not None and out.op.direct is not None and out.op.cols is None  # the path was taken
