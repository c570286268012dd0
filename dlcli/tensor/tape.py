"""The tape: the Op base class (one or several outputs), recording in training, the reverse walk, no_grad()."""

from __future__ import annotations

import functools
import operator
import threading
import time
from typing import Any

import numpy as np

from dlcli.tensor import profile
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


_requires_grad, _data = operator.attrgetter("requires_grad"), operator.attrgetter("data")


class Op:
    """One differentiable operation: `forward` on arrays, and `backward` from its outputs' gradients.

    `forward` takes one array per input and returns one array, or a tuple of arrays for an op with several
    outputs (batch normalization's output, mean and variance); `apply` then returns one Tensor per array, each
    with its own gradient, as chainer's FunctionNode does. `forward` keeps on `self` only what `backward` needs.
    `backward` receives one gradient per output, in order and always dense (None for an output that got none;
    at least one is an array), and returns one gradient per input, in order and shaped like it (a dense array,
    or SparseRows when only a few rows of the input get one), or None where the input needs none
    (`self.needs_grad` says which do); it never writes into its arguments. The op holds its inputs but never
    its outputs, so no cycle forms.
    """

    inputs: tuple[Tensor, ...] = ()
    needs_grad: tuple[bool, ...] = ()
    n_outputs = 1
    node: str | None = None  # the graph node (or step phase) that made the op, set only while profiling
    # True for an op whose output is read back to find its input (softmax and sigmoid: a crossentropy works from
    # their logits): such an output names its op even where nothing is recorded (no_grad, constant inputs),
    # without a gradient path, so evaluation computes the same loss as training
    links_input = False

    def forward(self, *arrays: Array) -> Array | tuple[Array, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *d_outputs: Array | None) -> tuple[Gradient | None, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **options: Any) -> Any:
        """Run the op on tensors; in grad mode, record it when any input requires a gradient.

        Returns a Tensor, or a tuple of Tensors when `forward` returns a tuple of arrays.
        """
        op = cls(**options) if options else cls()
        # map with attrgetter, not generator expressions: this runs for every op of every step (the tiny MLP's
        # step is mostly this overhead)
        needs = tuple(map(_requires_grad, inputs)) if _mode.enabled else ()
        record = True in needs
        op.needs_grad = needs if record else (False,) * len(inputs)
        result = op.forward(*map(_data, inputs))
        recording = profile.state.active
        if recording is not None:
            op.node = recording.label
            recording.ops.append((recording.label, op))
        if type(result) is tuple:
            return op._several(result, inputs, record)
        out = Tensor(result)
        if record:
            op.inputs = inputs
            out.op = op
            out.requires_grad = True
        elif op.links_input:
            op.inputs = inputs
            out.op = op
        return out

    def _several(self, arrays: tuple[Array, ...], inputs: tuple[Tensor, ...], record: bool) -> tuple[Tensor, ...]:
        """The tensors of an op with several outputs, each knowing its place among them."""
        outputs = tuple(Tensor(a) for a in arrays)
        self.n_outputs = len(outputs)
        if record:
            self.inputs = inputs
            for index, out in enumerate(outputs):
                out.op, out.output_index, out.requires_grad = self, index, True
        return outputs


def _ops_in_order(root: Op) -> list[Op]:
    """Ops reachable from root through inputs that require a gradient, each after every op whose output it takes.

    An iterative depth-first post-order: an op is marked when it is first expanded, not when pushed, so an op
    reached by paths of different lengths still comes before all of its consumers.
    """
    order: list[Op] = []
    visited: set[Op] = set()  # ops hash by identity: no id() call per visit
    stack: list[tuple[Op, bool]] = [(root, False)]
    while stack:
        op, finished = stack.pop()
        if finished:
            order.append(op)
            continue
        if op in visited:
            continue
        visited.add(op)
        stack.append((op, True))
        for parent in op.inputs:
            source = parent.op
            if source is not None and parent.requires_grad and source not in visited:
                stack.append((source, False))
    return order


def run_backward(root: Tensor, grad: Array | None = None, retain_graph: bool = False) -> None:
    """Reverse-mode sweep from root: leaves get `.grad` added to; the graph is freed unless retained.

    Each op's backward runs once, after every consumer of every one of its outputs has sent its gradient.
    An op may return a SparseRows gradient (an embedding lookup's table). Gradients of one tensor add up as
    `_accumulate` says; a leaf keeps a SparseRows `.grad` while every contribution to it is sparse, and an
    op's backward always receives dense arrays.
    """
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require a gradient")
    top = root.op
    if grad is None:
        if root.size != 1:
            raise RuntimeError("backward() without a gradient needs a one-element tensor")
        # an op's backward never writes into its arguments, so the seed of every step can be one read-only array
        # (np.ones_like took 2.4 us of the tiny MLP's step); a leaf keeps its own, as its .grad
        grad = _seed(root.data.shape, root.data.dtype) if top is not None else np.ones_like(root.data)
    if top is None:  # a leaf: the gradient is the one given
        root.grad = grad if root.grad is None else root.grad + grad
        return
    order = _ops_in_order(top)
    # the gradients reaching each op's outputs, keyed by the op: one array, or a list with a slot per output
    grads: dict[Any, Any] = {}
    if top.n_outputs == 1:
        grads[top] = grad
    else:
        grads[top] = [None] * top.n_outputs
        grads[top][root.output_index] = grad
    leaves: dict[int, Tensor] = {}
    leaf_grads: dict[int, Gradient] = {}
    owned: set[Any] = set()  # keys of dense sums this walk allocated: only those may be added to in place
    recording = profile.state.active
    for op in reversed(order):
        d_out = grads.pop(op, None)
        if d_out is None:  # none of its outputs leads to root
            continue
        start = time.perf_counter() if recording is not None else 0.0
        if op.n_outputs == 1:
            d_inputs = op.backward(d_out.to_dense() if isinstance(d_out, SparseRows) else d_out)
        else:
            d_inputs = op.backward(*[d.to_dense() if isinstance(d, SparseRows) else d for d in d_out])
        if recording is not None:
            recording.add_backward(op.node, time.perf_counter() - start)
        for parent, needed, d_parent in zip(op.inputs, op.needs_grad, d_inputs):
            if not needed or d_parent is None:
                continue
            source = parent.op
            if source is None:  # a leaf
                key = id(parent)
                leaves[key] = parent
                previous = leaf_grads.get(key)
                leaf_grads[key] = d_parent if previous is None else _accumulate(previous, d_parent, key, owned)
            elif source.n_outputs == 1:
                previous = grads.get(source)
                grads[source] = d_parent if previous is None else _accumulate(previous, d_parent, source, owned)
            else:
                slots = grads.get(source)
                if slots is None:
                    slots = grads[source] = [None] * source.n_outputs
                index = parent.output_index
                previous = slots[index]
                slots[index] = d_parent if previous is None \
                    else _accumulate(previous, d_parent, (source, index), owned)
    for key, d_leaf in leaf_grads.items():  # a leaf's .grad accumulates across backward() calls
        leaf = leaves[key]
        leaf.grad = d_leaf if leaf.grad is None else leaf.grad + d_leaf
    if not retain_graph:
        root.op = None
        for op in order:
            for parent in op.inputs:
                parent.op = None


@functools.cache
def _seed(shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """A read-only one-element array of ones (the gradient of a loss on itself), made once per shape and dtype."""
    seed = np.ones(shape, dtype)
    seed.flags.writeable = False
    return seed


def _accumulate(previous: Gradient, d_parent: Gradient, key: Any, owned: set[Any]) -> Gradient:
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
