"""The tape: recording, ops with several outputs, the reverse walk, no_grad, and freeing the graph."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Op, Tensor, is_grad_enabled, no_grad
from tests.gradcheck import check_op_gradients


def test_diamond_graph_with_paths_of_different_length() -> None:
    # p feeds the division directly and through a sum: the walk must finish both before reaching p
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    check_op_gradients(lambda t: ops.log(t / ops.sum(t, axis=-1, keepdims=True)), [p])
    check_op_gradients(lambda t: ops.exp(ops.exp(ops.exp(t))) * t + ops.tanh(t), [p])


def test_no_grad_records_nothing() -> None:
    w = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        out = w * 2.0 + 1.0
    assert is_grad_enabled()
    assert out.op is None and not out.requires_grad


def test_no_grad_works_as_a_decorator() -> None:
    @no_grad()
    def infer(t: Tensor) -> Tensor:
        return t * 3.0

    assert infer(Tensor(np.ones(2), requires_grad=True)).op is None


def test_constants_record_nothing() -> None:
    out = Tensor(np.ones(3)) * 2.0
    assert out.op is None


def test_backward_frees_the_graph_and_leaves_no_cycle() -> None:
    w = Tensor(np.ones((4, 4)), requires_grad=True)
    hidden = ops.relu(w @ w) * 2.0
    probe = weakref.ref(hidden)
    loss = hidden.sum()
    del hidden
    loss.backward()
    assert loss.op is None
    del loss
    gc.disable()  # only reference counting may free it: a cycle would keep it alive
    try:
        assert probe() is None
    finally:
        gc.enable()


def test_intermediate_graph_is_freed_without_backward() -> None:
    w = Tensor(np.ones((3, 3)), requires_grad=True)
    out = ops.tanh(w @ w)
    probe = weakref.ref(out.op)
    gc.disable()
    try:
        del out
        assert probe() is None
    finally:
        gc.enable()


def test_backward_needs_a_scalar_or_a_gradient() -> None:
    w = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (w * 2.0).backward()
    (w * 2.0).backward(np.array([1.0, 2.0, 3.0]))
    assert w.grad.tolist() == [2.0, 4.0, 6.0]


def test_retain_graph_allows_a_second_backward() -> None:
    w = Tensor(np.array([3.0]), requires_grad=True)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert w.grad.tolist() == [12.0]


def test_a_leaf_keeps_a_sparse_grad_until_a_dense_one_is_added() -> None:
    from dlcli.tensor import SparseRows

    table = Tensor(np.zeros((4, 2)), requires_grad=True)
    ops.take_rows(table, np.array([1, 1])).sum().backward()
    ops.take_rows(table, np.array([3])).sum().backward()  # across backward() calls: still sparse
    assert isinstance(table.grad, SparseRows)
    assert table.grad.to_dense().tolist() == [[0, 0], [2, 2], [0, 0], [1, 1]]
    (table * 1.0).sum().backward()
    assert isinstance(table.grad, np.ndarray) and table.grad.tolist() == [[1, 1], [3, 3], [1, 1], [2, 2]]


class _SumAndProduct(Op):
    """(a + b, a * b): one op with two outputs, recording what its backward receives."""

    received: list[tuple[bool, bool]] = []

    def forward(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.a, self.b = a, b
        return a + b, a * b

    def backward(self, d_sum: np.ndarray | None, d_product: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        _SumAndProduct.received.append((d_sum is not None, d_product is not None))
        d_a, d_b = np.zeros_like(self.a), np.zeros_like(self.b)
        if d_sum is not None:
            d_a, d_b = d_a + d_sum, d_b + d_sum
        if d_product is not None:
            d_a, d_b = d_a + d_product * self.b, d_b + d_product * self.a
        return d_a, d_b


def _two_outputs(a: Tensor, b: Tensor) -> Tensor:
    total, product = _SumAndProduct.apply(a, b)
    # both outputs used twice, on paths of different lengths, and fed on to a second two-output op
    again, _ = _SumAndProduct.apply(ops.exp(total * 0.3), product)
    return total * product + product * 3.0 + ops.tanh(total) + again


def test_an_op_with_several_outputs_runs_its_backward_once_with_every_outputs_gradient() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    _SumAndProduct.received.clear()
    check_op_gradients(_two_outputs, [a, b])  # float64, against central differences
    assert _SumAndProduct.received == [(True, False), (True, True)]  # the second op's product is unused: None


def test_each_output_is_a_tensor_with_its_own_slot_and_may_be_the_root() -> None:
    a, b = Tensor(np.array([2.0, 3.0]), requires_grad=True), Tensor(np.array([5.0, 7.0]), requires_grad=True)
    total, product = _SumAndProduct.apply(a, b)
    assert total.op is product.op and (total.output_index, product.output_index) == (0, 1)
    assert total.data.tolist() == [7.0, 10.0] and product.data.tolist() == [10.0, 21.0]
    _SumAndProduct.received.clear()
    product.backward(np.ones(2))  # the root is the op's second output
    assert _SumAndProduct.received == [(False, True)]
    assert a.grad.tolist() == [5.0, 7.0] and b.grad.tolist() == [2.0, 3.0]
    assert product.op is None


def test_a_graph_with_several_outputs_is_freed_after_backward_without_a_cycle() -> None:
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    total, product = _SumAndProduct.apply(a, b)
    probes = [weakref.ref(total), weakref.ref(product), weakref.ref(total.op)]
    loss = (total * product).sum()
    del total, product
    loss.backward()
    del loss
    gc.disable()
    try:
        assert all(probe() is None for probe in probes)
    finally:
        gc.enable()


def test_without_a_tape_several_outputs_record_nothing() -> None:
    with no_grad():
        total, product = _SumAndProduct.apply(Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2)))
    assert total.op is None and product.op is None and not total.requires_grad
