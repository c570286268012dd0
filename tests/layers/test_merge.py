"""Merge layers: shapes, gradients to every input, and shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.errors import SpecError
from dlcli.layers import create_layer
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

rng = np.random.default_rng(11)

# type -> (config, per-example input shapes, expected output shape)
CASES = {
    "concatenate": ({"type": "concatenate"}, [(3,), (2,), (4,)], (9,)),
    "concatenate_axis1": ({"type": "concatenate", "axis": 1}, [(2, 3), (1, 3)], (3, 3)),
    "add": ({"type": "add"}, [(4,), (4,)], (4,)),
    "multiply": ({"type": "multiply"}, [(2, 3), (2, 3), (2, 3)], (2, 3)),
    "average": ({"type": "average"}, [(4,), (4,)], (4,)),
    "maximum": ({"type": "maximum"}, [(5,), (5,)], (5,)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_merge_gradient_and_shape(name: str) -> None:
    config, in_shapes, out_shape = CASES[name]
    layer = create_layer(config)
    assert layer.connect(in_shapes, np.random.default_rng(0)) == out_shape
    inputs = [rng.normal(size=(3, *shape)) for shape in in_shapes]
    check_op_gradients(lambda *xs: layer(*xs), inputs)
    assert layer(*[Tensor(x) for x in inputs]).shape == (3, *out_shape)


def test_merge_values() -> None:
    a, b = np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])
    out = {kind: create_layer({"type": kind}) for kind in ("add", "multiply", "average", "maximum")}
    for layer in out.values():
        layer.connect([(2,), (2,)], np.random.default_rng(0))
    assert out["add"](Tensor(a), Tensor(b)).data.tolist() == [[4.0, 7.0]]
    assert out["multiply"](Tensor(a), Tensor(b)).data.tolist() == [[3.0, 10.0]]
    assert out["average"](Tensor(a), Tensor(b)).data.tolist() == [[2.0, 3.5]]
    assert out["maximum"](Tensor(a), Tensor(b)).data.tolist() == [[3.0, 5.0]]


def test_add_rejects_different_shapes_naming_the_layer() -> None:
    layer = create_layer({"type": "add", "name": "residual"})
    layer.key = "model.nodes.residual"
    with pytest.raises(SpecError, match=r"model.nodes.residual: add needs inputs of one shape, got \[64\], \[32\]"):
        layer.connect([(64,), (32,)], np.random.default_rng(0))


def test_concatenate_rejects_mismatched_other_axes() -> None:
    layer = create_layer({"type": "concatenate", "axis": -1})
    with pytest.raises(SpecError, match="other axes to agree"):
        layer.connect([(2, 3), (4, 3)], np.random.default_rng(0))


@pytest.mark.parametrize("axis", [0, 3, -4])
def test_concatenate_refuses_the_batch_axis_and_axes_out_of_range_naming_the_key(axis: int) -> None:
    # Keras counts the batch axis as 0: axis = 0 would join examples, never a model's features; it used to be
    # read as 0 - 1 = -1, the last axis
    layer = create_layer({"type": "concatenate", "axis": axis})
    layer.key = "model.nodes.joined"
    with pytest.raises(SpecError) as info:
        layer.connect([(2, 3), (2, 3)], np.random.default_rng(0))
    assert str(info.value) == (f"model.nodes.joined.axis: {axis} is not a feature axis of inputs of rank 3 "
                               "(batch, 2, 3); give one of 1..2, or -1 for the last axis (0 is the batch axis)")


@pytest.mark.parametrize("axis,expected", [(1, (4, 3)), (2, (2, 6)), (-1, (2, 6)), (-2, (4, 3))])
def test_concatenate_axis_counts_the_batch_axis_as_keras(axis: int, expected: tuple[int, ...]) -> None:
    layer = create_layer({"type": "concatenate", "axis": axis})
    assert layer.connect([(2, 3), (2, 3)], np.random.default_rng(0)) == expected
    a, b = np.zeros((1, 2, 3)), np.ones((1, 2, 3))
    np.testing.assert_array_equal(layer(Tensor(a), Tensor(b)).data, np.concatenate([a, b], axis=axis))
