"""The conv2d_transpose and depthwise_conv2d ops: gradients in float64, output sizes by Keras' rules."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops.conv import geometry, transposed_geometry, transposed_size
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(21)


def _transposed(shape: tuple[int, int, int], kernel: tuple[int, int], filters: int, strides=(1, 1), dilation=(1, 1),
                padding: str = "valid", output_padding=None, activation: str = "linear"):
    g, out_h, out_w = transposed_geometry(shape[0], shape[1], kernel, strides, dilation, padding, output_padding)
    inputs = [rng.normal(size=(2, *shape)), rng.normal(size=(*kernel, filters, shape[2])) * 0.5,
              rng.normal(size=filters) + (0.3 if activation == "relu" else 0.0)]
    return (lambda x, w, b: ops.conv2d_transpose(x, w, b, g, out_h, out_w, activation)), inputs


def _depthwise(shape: tuple[int, int, int], kernel: tuple[int, int], multiplier: int, strides=(1, 1),
               padding: str = "valid"):
    g = geometry(shape[0], shape[1], kernel, strides, (1, 1), padding)
    inputs = [rng.normal(size=(2, *shape)), rng.normal(size=(*kernel, shape[2], multiplier)),
              rng.normal(size=shape[2] * multiplier)]
    return (lambda x, w, b: ops.depthwise_conv2d(x, w, b, g)), inputs


CASES = {
    "conv2d_transpose_valid": _transposed((3, 4, 2), (3, 3), 2, strides=(2, 2)),
    "conv2d_transpose_same": _transposed((3, 3, 2), (3, 3), 3, strides=(2, 2), padding="same"),
    "conv2d_transpose_same_even_kernel_relu": _transposed((2, 3, 1), (4, 2), 2, strides=(2, 3), padding="same",
                                                          activation="relu"),
    "conv2d_transpose_valid_stride_over_kernel": _transposed((2, 2, 2), (2, 2), 2, strides=(3, 3)),
    "conv2d_transpose_output_padding_dilated": _transposed((3, 3, 1), (2, 2), 2, strides=(2, 2), dilation=(2, 1),
                                                           padding="same", output_padding=(1, 0)),
    "depthwise_conv2d": _depthwise((4, 5, 2), (3, 2), 2),
    "depthwise_conv2d_same_strided": _depthwise((5, 5, 3), (3, 3), 1, strides=(2, 2), padding="same"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


@pytest.mark.parametrize("size,kernel,stride,padding,output_padding,expected", [
    (3, 3, 2, "valid", None, 7), (3, 4, 2, "valid", None, 8), (3, 2, 3, "valid", None, 9),
    (3, 3, 2, "same", None, 6), (3, 4, 2, "same", None, 6), (3, 2, 3, "same", None, 9),
    (3, 3, 2, "same", 0, 5), (3, 3, 2, "valid", 1, 8), (5, 3, 1, "same", None, 5),
])
def test_transposed_output_size_follows_keras(size: int, kernel: int, stride: int, padding: str,
                                              output_padding: int | None, expected: int) -> None:
    # the shapes Keras 3.15.1's Conv2DTranspose gives for these settings (the values in tests/layers/keras_values.py)
    assert transposed_size(size, kernel, stride, 1, padding, output_padding)[0] == expected


def test_transposed_convolution_is_the_adjoint_of_the_convolution() -> None:
    # <conv(y), x> = <y, conv_transpose(x)> for the same kernel and geometry: the defining property
    g, out_h, out_w = transposed_geometry(4, 3, (3, 3), (2, 2), (1, 1), "same", None)
    x, y = rng.normal(size=(1, 4, 3, 2)), rng.normal(size=(1, out_h, out_w, 3))
    kernel = rng.normal(size=(3, 3, 3, 2))
    from dlcli.tensor import Tensor

    forward = ops.conv2d(Tensor(y), Tensor(kernel), Tensor(np.zeros(2)), geometry(out_h, out_w, (3, 3), (2, 2), (1, 1),
                                                                                 "same"))
    transposed = ops.conv2d_transpose(Tensor(x), Tensor(kernel), Tensor(np.zeros(3)), g, out_h, out_w)
    np.testing.assert_allclose((forward.data * x).sum(), (y * transposed.data).sum(), rtol=1e-10)
