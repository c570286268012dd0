"""The tape: the Op base class, recording in training, the reverse walk, and no_grad()."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from dlcli.tensor.sparse import SparseRows
from dlcli.tensor.tensor import Array, Tensor

Gradient = Array | SparseRows


class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()


class no_grad:
    """Context manager (and decorator) under which ops record nothing: inference and evaluation."""

    def __enter__(self) -> None:
        self._previous = _mode.enabled
        _mode.enabled = False

    def __exit__(self, *exc: object) -> None:
        _mode.enabled = self._previous

    def __call__(self, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)

        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped


def is_grad_enabled() -> bool:
    """Whether ops record the graph now."""
    return _mode.enabled


class Op:
    """One differentiable operation: `forward` on arrays, and `backward` from the output's gradient.

    `forward` keeps on `self` only what `backward` needs. `backward` returns one gradient per input, in
    order and shaped like it (a dense array, or SparseRows when only a few rows of the input get one),
    or None where the input needs none (`self.needs_grad` says which do), and never writes into its
    arguments. `d_out` is always dense. The op holds its inputs but never its output, so no cycle forms.
    """

    inputs: tuple[Tensor, ...] = ()
    needs_grad: tuple[bool, ...] = ()

    def forward(self, *arrays: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, d_out: Array) -> tuple[Gradient | None, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **options: Any) -> Tensor:
        """Run the op on tensors; in grad mode, record it when any input requires a gradient."""
        op = cls(**options) if options else cls()
        needs = tuple(t.requires_grad for t in inputs) if _mode.enabled else ()
        record = any(needs)
        op.needs_grad = needs if record else (False,) * len(inputs)
        out = Tensor(op.forward(*[t.data for t in inputs]))
        if record:
            op.inputs = inputs
            out.op = op
            out.requires_grad = True
        return out


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from root through recorded ops, each after every tensor it was made from.

    An iterative depth-first post-order: a node is marked when it is first expanded, not when pushed,
    so a tensor reached by paths of different lengths still comes before all of its consumers.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.op is not None:
            for parent in node.op.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def run_backward(root: Tensor, grad: Array | None = None, retain_graph: bool = False) -> None:
    """Reverse-mode sweep from root: leaves get `.grad` added to; the graph is freed unless retained.

    An op may return a SparseRows gradient (an embedding lookup's table). Gradients of one tensor add up
    as `_accumulate` says; a leaf keeps a SparseRows `.grad` while every contribution to it is sparse, and
    an op's backward always receives a dense array.
    """
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require a gradient")
    if grad is None:
        if root.size != 1:
            raise RuntimeError("backward() without a gradient needs a one-element tensor")
        grad = np.ones_like(root.data)
    grads: dict[int, Gradient] = {id(root): grad}
    # Dense arrays this walk allocated itself by summing: only those may be added to in place.
    owned: set[int] = set()
    for node in reversed(_topological_order(root)):
        d_node = grads.pop(id(node), None)
        op = node.op
        if op is None:  # a leaf: accumulate across backward() calls
            if d_node is not None:
                node.grad = d_node if node.grad is None else node.grad + d_node
            continue
        if d_node is not None:
            if isinstance(d_node, SparseRows):  # a table made by an op: ops differentiate dense arrays
                d_node = d_node.to_dense()
            for parent, needed, d_parent in zip(op.inputs, op.needs_grad, op.backward(d_node)):
                if not needed or d_parent is None:
                    continue
                key = id(parent)
                previous = grads.get(key)
                grads[key] = d_parent if previous is None else _accumulate(previous, d_parent, key, owned)
        if not retain_graph:
            node.op = None


def _accumulate(previous: Gradient, d_parent: Gradient, key: int, owned: set[int]) -> Gradient:
    """previous + d_parent: in place when previous is a dense array of ours, else a new sum (then ours).

    Sparse + sparse stays sparse (concatenated rows, O(rows touched)); sparse + dense is dense.
    """
    if key in owned:  # a dense array of ours
        if isinstance(d_parent, SparseRows):
            return d_parent.add_to(previous)  # type: ignore[arg-type]
        previous += d_parent
        return previous
    total = previous + d_parent
    if isinstance(total, np.ndarray):
        owned.add(key)
    return total
