"""Pooling ops: gradients for odd sizes, strides and both paddings; values against PyTorch and Keras' rules."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops.pool import pool_output_size
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(8)


def distinct(*shape: int) -> np.ndarray:
    """Values 1/n apart in random order: every max-pool window has one winner, so the gradient exists."""
    n = int(np.prod(shape))
    return rng.permutation(n).reshape(shape) / n


def _max2(pool: int | tuple[int, int], strides: int | tuple[int, int] | None = None, padding: str = "valid"):
    return lambda x: ops.max_pool2d(x, pool, strides, padding)


def _avg2(pool: int | tuple[int, int], strides: int | tuple[int, int] | None = None, padding: str = "valid"):
    return lambda x: ops.average_pool2d(x, pool, strides, padding)


CASES = {
    "max_pool2d": (_max2(2), [distinct(2, 7, 5, 3)]),
    "max_pool2d_same": (_max2(2, padding="same"), [distinct(2, 7, 5, 3)]),
    "max_pool2d_overlapping_stride1": (_max2(3, 1), [distinct(1, 6, 5, 2)]),
    "max_pool2d_same_stride3": (_max2(2, 3, "same"), [distinct(2, 7, 5, 2)]),
    "max_pool2d_rectangular_same": (_max2((3, 2), (2, 1), "same"), [distinct(1, 7, 5, 2)]),
    "max_pool1d": (lambda x: ops.max_pool1d(x, 2), [distinct(2, 7, 3)]),
    "max_pool1d_same_stride3": (lambda x: ops.max_pool1d(x, 2, 3, "same"), [distinct(2, 7, 3)]),
    "max_pool1d_overlapping_same": (lambda x: ops.max_pool1d(x, 3, 1, "same"), [distinct(2, 5, 2)]),
    "average_pool2d": (_avg2(2), [rng.normal(size=(2, 7, 5, 3))]),
    "average_pool2d_same": (_avg2(3, 2, "same"), [rng.normal(size=(2, 7, 5, 2))]),
    "average_pool2d_overlapping_stride1": (_avg2(3, 1), [rng.normal(size=(1, 6, 5, 2))]),
    "average_pool2d_rectangular_same_stride3": (_avg2((2, 3), 3, "same"), [rng.normal(size=(1, 7, 5, 2))]),
    "average_pool1d": (lambda x: ops.average_pool1d(x, 3, 2), [rng.normal(size=(2, 7, 3))]),
    "average_pool1d_same": (lambda x: ops.average_pool1d(x, 2, padding="same"), [rng.normal(size=(2, 7, 3))]),
}


def _conv_max_pool(shape, padding, strides, dilation, pool, pool_strides, pool_padding, activation):
    """conv2d_max_pool2d of fixed 1-channel images (no gradient: the fused forward's case) as a function of the
    kernel and the bias."""
    from dlcli.ops.conv import geometry

    g = geometry(*shape, (3, 3), strides, dilation, padding)
    x = Tensor(rng.normal(size=(2, *shape, 1)))
    return lambda w, b: ops.conv2d_max_pool2d(x, w, b, g, activation, "auto", pool, pool_strides, pool_padding)


# the fused forward and backward (ConvMaxPool without a conv), in float64; the bias lifts relu's kinks off zero
CASES.update({
    "conv2d_max_pool2d_relu": (_conv_max_pool((6, 6), "valid", (1, 1), (1, 1), 2, None, "valid", "relu"),
                               [rng.normal(size=(3, 3, 1, 3)) * 0.5, rng.normal(size=3) + 0.3]),
    "conv2d_max_pool2d_tanh_same_odd": (_conv_max_pool((7, 6), "same", (2, 1), (1, 1), 2, 2, "same", "tanh"),
                                        [rng.normal(size=(3, 3, 1, 3)) * 0.5, rng.normal(size=3)]),
    "conv2d_max_pool2d_linear_dilated": (
        _conv_max_pool((9, 8), "same", (1, 1), (2, 2), (2, 1), (3, 1), "same", "linear"),
        [rng.normal(size=(3, 3, 1, 2)) * 0.5, rng.normal(size=2)]),
    "conv2d_max_pool2d_one_cell_windows": (_conv_max_pool((5, 5), "valid", (1, 1), (1, 1), 1, None, "valid", "relu"),
                                           [rng.normal(size=(3, 3, 1, 2)) * 0.5, rng.normal(size=2) + 0.3]),
})


@pytest.mark.parametrize("name", sorted(CASES))
def test_pool_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def keras_pool_reference(x: np.ndarray, pool: tuple[int, int], strides: tuple[int, int], padding: str,
                         reduce: str) -> np.ndarray:
    """Keras' pooling of (N, H, W, C) written out: NaN padding (extra cell after), then nanmax / nanmean."""
    sizes = [pool_output_size(x.shape[1 + a], pool[a], strides[a], padding) for a in range(2)]
    pads = [(before, max((out - 1) * strides[a] + pool[a] - x.shape[1 + a], 0) - before)
            for a, (out, before) in enumerate(sizes)]
    padded = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=np.nan)
    out = np.empty((x.shape[0], sizes[0][0], sizes[1][0], x.shape[3]), x.dtype)
    for i, j in np.ndindex(out.shape[1:3]):
        window = padded[:, i * strides[0]:i * strides[0] + pool[0], j * strides[1]:j * strides[1] + pool[1]]
        out[:, i, j] = (np.nanmax if reduce == "max" else np.nanmean)(window, axis=(1, 2))
    return out


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool, strides", [((2, 2), (2, 2)), ((3, 2), (2, 3)), ((3, 3), (1, 1)), ((2, 2), (3, 3))])
def test_pooling_matches_the_keras_rule(pool: tuple[int, int], strides: tuple[int, int], padding: str) -> None:
    x = rng.normal(size=(2, 7, 5, 3)).astype(np.float32)
    for reduce, fn in (("max", ops.max_pool2d), ("average", ops.average_pool2d)):
        out = fn(Tensor(x), pool, strides, padding).data
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, keras_pool_reference(x, pool, strides, padding, reduce), rtol=1e-6)


def test_same_average_pooling_divides_by_the_cells_inside_the_image() -> None:
    # TF's SAME average pooling: a 3x3 window at a corner of a 3x3 image holds 4 of its cells, not 9
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    out = ops.average_pool2d(Tensor(x), 3, 1, "same").data[0, :, :, 0]
    assert out[0, 0] == np.mean([0, 1, 3, 4]) and out[1, 1] == np.mean(np.arange(9))
    assert out[2, 2] == np.mean([4, 5, 7, 8])


def test_one_d_pooling_equals_two_d_pooling_of_height_one() -> None:
    x = rng.normal(size=(2, 9, 4)).astype(np.float32)
    for one_d, two_d in ((ops.max_pool1d, ops.max_pool2d), (ops.average_pool1d, ops.average_pool2d)):
        np.testing.assert_array_equal(one_d(Tensor(x), 3, 2, "same").data,
                                      two_d(Tensor(x[:, None]), (1, 3), (1, 2), "same").data[:, 0])


def test_overlapping_max_pool_windows_add_their_gradients() -> None:
    # the 9 is the max of all four 2x2 windows (stride 1) of a 3x3 image: it collects all four gradients
    x = Tensor(np.array([1, 2, 3, 4, 9, 5, 6, 7, 8], np.float32).reshape(1, 3, 3, 1), requires_grad=True)
    ops.max_pool2d(x, 2, 1).backward(np.array([1, 2, 3, 4], np.float32).reshape(1, 2, 2, 1))
    assert x.grad.reshape(-1).tolist() == [0, 0, 0, 0, 10, 0, 0, 0, 0]


# torch.nn.functional.max_pool2d(x, 3, 2) and avg_pool2d(x, (2, 3), (2, 1)) on this x in NCHW (permuted),
# torch 2.13.0, computed once in a scratch script; the tests do not import torch
_TORCH_X = (np.random.default_rng(5).permutation(70).reshape(1, 7, 5, 2) / 7).astype(np.float32)
_TORCH_MAX_POOL = [[[[8.142858, 9.857142], [8.714286, 9.857142]], [[9.285714, 9.571428], [9.428572, 8.0]],
                    [[9.285714, 9.571428], [9.0, 9.714286]]]]
_TORCH_AVG_POOL = [[[[4.428571, 7.4285717], [5.095238, 6.2380958], [5.166667, 4.642857]],
                    [[3.4761908, 4.9761906], [3.8095238, 5.190476], [5.047619, 3.9285715]],
                    [[5.6190476, 5.238095], [5.690476, 5.6666665], [4.7380958, 4.904762]]]]


def test_max_and_average_pooling_match_pytorch() -> None:
    np.testing.assert_allclose(ops.max_pool2d(Tensor(_TORCH_X), 3, 2).data, _TORCH_MAX_POOL, rtol=1e-6)
    np.testing.assert_allclose(ops.average_pool2d(Tensor(_TORCH_X), (2, 3), (2, 1)).data, _TORCH_AVG_POOL,
                               rtol=1e-6)


def test_pool_output_size_follows_keras() -> None:
    assert pool_output_size(26, 2, 2, "valid") == (13, 0)
    assert pool_output_size(11, 2, 2, "valid") == (5, 0)
    assert pool_output_size(7, 3, 2, "same") == (4, 1)  # 2 padding cells, one each side
    assert pool_output_size(5, 2, 1, "same") == (5, 0)  # 1 padding cell, after
    assert pool_output_size(7, 2, 3, "same") == (3, 0)
    assert pool_output_size(2, 3, 1, "valid")[0] < 1


# A max pool right after a 1-channel conv2d whose image needs no gradient (a first layer) is a ConvMaxPool:
# its backward goes from the pooled gradient straight to the conv's kernel and bias
# (kernels/conv_one_channel.backward_pooled_images). Geometries: the convnet's, clipped "same" windows,
# overlapping windows, a strided dilated conv, 1-wide windows.
CONV_POOL_CASES = [((6, 6), (3, 3), (1, 1), (1, 1), "valid", (2, 2), None, "valid", "relu"),
                   ((7, 6), (3, 2), (2, 1), (1, 1), "same", (2, 2), (2, 2), "same", "tanh"),
                   ((6, 7), (3, 3), (1, 1), (1, 1), "valid", (2, 2), (1, 1), "valid", "linear"),
                   ((9, 8), (3, 3), (1, 1), (2, 2), "same", (2, 1), (3, 1), "same", "relu"),
                   ((5, 5), (2, 2), (1, 1), (1, 1), "same", (1, 2), None, "valid", "tanh")]


def _conv_pool(shape, kernel, strides, dilation, padding, pool, pool_strides, pool_padding, activation):
    from dlcli.ops.conv import geometry

    g = geometry(*shape, kernel, strides, dilation, padding)
    x = Tensor(rng.normal(size=(2, *shape, 1)))  # an input without gradient, as a first layer's images
    w, b = rng.normal(size=(*kernel, 1, 3)) * 0.5, rng.normal(size=3) + (0.3 if activation == "relu" else 0.0)
    return (lambda w, b: ops.max_pool2d(ops.conv2d(x, w, b, g, activation, "im2col"), pool, pool_strides,
                                        pool_padding)), [w, b]


@pytest.mark.parametrize("case", CONV_POOL_CASES)
def test_max_pool_after_a_first_conv_differentiates_to_its_weights(case) -> None:
    from dlcli.ops.pool import ConvMaxPool

    fn, inputs = _conv_pool(*case)
    check_op_gradients(fn, inputs)
    out = fn(*(Tensor(a, requires_grad=True) for a in inputs))
    assert type(out.op) is ConvMaxPool  # the path was taken


def test_a_conv_output_taken_by_the_pool_and_another_op_gets_both_gradients() -> None:
    # the conv's own backward runs for the other consumer; the pool's adds into the same kernel and bias
    _, inputs = _conv_pool((6, 6), (3, 3), (1, 1), (1, 1), "valid", (2, 2), None, "valid", "relu")
    from dlcli.ops.conv import geometry

    g = geometry(6, 6, (3, 3), (1, 1), (1, 1), "valid")
    x = Tensor(rng.normal(size=(2, 6, 6, 1)))

    def both(w: Tensor, b: Tensor) -> Tensor:
        conv = ops.conv2d(x, w, b, g, "relu", "im2col")
        return ops.max_pool2d(conv, 2) + ops.average_pool2d(conv, 2)

    check_op_gradients(both, inputs)


def test_the_fused_pool_gives_the_unfused_output_and_gradients() -> None:
    from dlcli.ops.conv import geometry
    from dlcli.ops.pool import MaxPool

    g = geometry(28, 28, (3, 3), (1, 1), (1, 1), "valid")
    x = Tensor(rng.random((8, 28, 28, 1), dtype=np.float32))
    kernel = rng.normal(0, 0.3, (3, 3, 1, 32)).astype(np.float32)
    bias = rng.normal(0, 0.1, 32).astype(np.float32)
    d = rng.normal(size=(8, 13, 13, 32)).astype(np.float32)
    results = []
    for pool in (lambda c: MaxPool.apply(c, pool_size=(2, 2), strides=(2, 2), padding="valid"),
                 lambda c: ops.max_pool2d(c, 2)):
        w, b = Tensor(kernel, requires_grad=True), Tensor(bias, requires_grad=True)
        out = pool(ops.conv2d(x, w, b, g, "relu"))
        out.backward(d)
        results.append((out.data, w.grad, b.grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    # up to float32 summation order: the fused backward adds the same products per pooled cell
    for unfused, fused in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(fused, unfused, rtol=1e-5, atol=1e-5 * np.abs(unfused).max())


def test_the_fused_backward_is_profiled_in_the_convs_row() -> None:
    from dlcli.ops.conv import geometry
    from dlcli.tensor import profile

    g = geometry(6, 6, (3, 3), (1, 1), (1, 1), "valid")
    x, w = Tensor(rng.random((2, 6, 6, 1))), Tensor(rng.normal(size=(3, 3, 1, 2)), requires_grad=True)
    measured = profile.Profile()
    with profile.recording(measured):
        with measured.phase("conv"):
            conv = ops.conv2d(x, w, Tensor(np.zeros(2)), g, "relu")
        with measured.phase("pool"):
            out = ops.max_pool2d(conv, 2)
        out.sum().backward()
    assert out.op is None and w.grad is not None  # the graph is freed after backward
    assert "conv" in measured._backward and "pool" not in measured._backward



@pytest.mark.parametrize("name", [name for name in CASES if name.startswith("conv2d_max_pool2d")])
def test_conv2d_max_pool2d_cases_take_the_fused_forward(name: str) -> None:
    from dlcli.ops.pool import ConvMaxPool

    fn, inputs = CASES[name]
    out = fn(*(Tensor(a, requires_grad=True) for a in inputs))
    assert type(out.op) is ConvMaxPool and out.op.inputs[0].op is None  # no Conv2D op before it: fused forward


@pytest.mark.parametrize("shape,padding,pool,activation", [
    ((28, 28), "valid", 2, "relu"), ((29, 29), "valid", 2, "relu"), ((27, 27), "valid", 2, "tanh"),
    ((28, 28), "same", 2, "linear"), ((27, 27), "same", 2, "relu"), ((28, 28), "valid", 1, "relu")])
@pytest.mark.parametrize("batch", [1, 9])
def test_the_fused_forward_gives_the_two_ops_output(shape, padding, pool, activation, batch) -> None:
    # float32 as training runs it: 26x26, odd 27x27 and 25x25 conv outputs (the pool's floor), both paddings.
    # The 9 products are added in im2col's order, as fused multiply-adds: the GEMM's blocking rounds some
    # differently, so values agree to a float32 rounding of the largest, not bit for bit (measured: at most
    # 2.4e-7 on the convnet's first layer, 86% of outputs identical); the argmax is the same
    from dlcli.ops.conv import geometry
    from dlcli.ops.pool import ConvMaxPool

    g = geometry(*shape, (3, 3), (1, 1), (1, 1), padding)
    x = Tensor(rng.random((batch, *shape, 1), dtype=np.float32))
    w = Tensor(rng.normal(0, 0.3, (3, 3, 1, 32)).astype(np.float32), requires_grad=True)
    b = Tensor(rng.normal(0, 0.1, 32).astype(np.float32), requires_grad=True)
    apart = ops.max_pool2d(ops.conv2d(x, w, b, g, activation), pool, None, padding)
    fused = ops.conv2d_max_pool2d(x, w, b, g, activation, "auto", pool, None, padding)
    assert type(fused.op) is ConvMaxPool and fused.op.inputs[0] is x
    assert fused.dtype == np.float32 and fused.shape == apart.shape
    np.testing.assert_allclose(fused.data, apart.data, rtol=0, atol=4e-7 * np.abs(apart.data).max())
    np.testing.assert_array_equal(fused.op.argmax, apart.op.argmax)
    assert fused.op.argmax.dtype == np.int32


def test_a_conv_whose_input_needs_a_gradient_takes_the_two_ops() -> None:
    from dlcli.ops.conv import Conv2D, geometry

    g = geometry(6, 6, (3, 3), (1, 1), (1, 1), "valid")
    x = Tensor(rng.normal(size=(2, 6, 6, 1)), requires_grad=True)
    w, b = Tensor(rng.normal(size=(3, 3, 1, 2)), requires_grad=True), Tensor(np.zeros(2), requires_grad=True)
    out = ops.conv2d_max_pool2d(x, w, b, g, "relu")
    assert type(out.op).__name__ == "MaxPool" and type(out.op.inputs[0].op) is Conv2D
    np.testing.assert_array_equal(out.data, ops.max_pool2d(ops.conv2d(x, w, b, g, "relu"), 2).data)


def test_conv2d_max_pool2d_refuses_an_activation_conv2d_does_not_compute() -> None:
    from dlcli.ops.conv import geometry

    g = geometry(6, 6, (3, 3), (1, 1), (1, 1), "valid")
    with pytest.raises(ValueError, match="not 'softmax'"):
        ops.conv2d_max_pool2d(Tensor(np.ones((1, 6, 6, 1))), Tensor(np.ones((3, 3, 1, 2))), Tensor(np.zeros(2)), g,
                              "softmax")
