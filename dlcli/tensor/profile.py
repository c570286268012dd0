"""The one instrumentation of dlcli: per-node forward and backward time, FLOPs and activation bytes, and named
phases of a training step (data, loss, optimizer, ...). `dlcli profile` and the benchmarks' per-layer tables
both read it.

Nothing is timed unless a Profile is active (`with recording(profile):`). Then the graph times each node's
call (`timed_call`), every op made during that call is tagged with the node's name, and the backward walk
times each op's backward and adds it to its node: so a node's backward time is the sum of its ops', with no
guess about which op belongs where. Ops made outside any node (the loss) are tagged with the current phase.
When no profile is active the tape pays one attribute test per op.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# layer types whose cost is a kernel (in, out) product per output position: FLOPs = 2 * positions * kernel size
_PRODUCT_LAYERS = ("dense", "conv1d", "conv2d")


@dataclass
class NodeRecord:
    """One node's measurements, a value per recorded step, and what one step's forward kept for backward."""

    kind: str
    forward_s: list[float] = field(default_factory=list)
    backward_s: list[float] = field(default_factory=list)
    forward_flops: int = 0
    backward_flops: int = 0
    kept_bytes: int = 0


@dataclass
class Profile:
    """Measurements of the steps recorded into it, by node (in graph order) and by phase."""

    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    phases: dict[str, list[float]] = field(default_factory=dict)
    label: str | None = None  # the node or phase whose ops are being made now
    ops: list[tuple[str, Any]] = field(default_factory=list)  # (label, op) made in the current step
    parameters: set[int] = field(default_factory=set)  # ids of parameter arrays: not activations
    _backward: dict[str, float] = field(default_factory=dict)

    def begin_step(self) -> None:
        """Start a step: forget the last step's ops and backward sums."""
        self.ops.clear()
        self._backward = {}

    def end_step(self) -> None:
        """File this step's backward sums under their nodes (a node with no backward op gets 0)."""
        for name, record in self.nodes.items():
            if len(record.backward_s) < len(record.forward_s):
                record.backward_s.append(self._backward.pop(name, 0.0))
        for name, seconds in self._backward.items():  # ops outside nodes: the loss's backward
            self.phases.setdefault(f"{name} backward", []).append(seconds)

    def add_backward(self, label: str | None, seconds: float) -> None:
        """Called by the backward walk for every op."""
        key = label or "other"
        self._backward[key] = self._backward.get(key, 0.0) + seconds

    def count_kept_bytes(self) -> None:
        """Bytes of the arrays this step's ops keep for backward, by node: each array once, parameters not."""
        seen: set[int] = set(self.parameters)
        for label, op in self.ops:
            record = self.nodes.get(label)
            if record is None:
                continue
            for value in vars(op).values():
                if isinstance(value, np.ndarray):
                    owner = value if value.base is None else value.base
                    if id(owner) not in seen and isinstance(owner, np.ndarray):
                        seen.add(id(owner))
                        record.kept_bytes += owner.nbytes
        self.ops.clear()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a named part of the step; ops made inside it are tagged with its name."""
        previous, self.label = self.label, name
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases.setdefault(name, []).append(time.perf_counter() - start)
            self.label = previous


class _Recording:
    active: Profile | None = None


state = _Recording()  # the tape and the graph read state.active


@contextlib.contextmanager
def recording(profile: Profile) -> Iterator[Profile]:
    """Record into profile within the block."""
    previous, state.active = state.active, profile
    try:
        yield profile
    finally:
        state.active = previous


def timed_call(profile: Profile, name: str, layer: Any, inputs: list[Any], training: bool,
               call: Callable[..., Any], shape: tuple[int, ...] | None = None) -> Any:
    """Run one node under the profile: its forward time, its ops tagged with its name, its FLOPs (from the
    layer's output positions: shape, its per-example output shape, when the call returns another, as a conv
    that computes the max pool after it does)."""
    record = profile.nodes.get(name)
    if record is None:
        record = profile.nodes[name] = NodeRecord(kind=getattr(getattr(layer, "spec", None), "type", "?"))
    previous, profile.label = profile.label, name
    start = time.perf_counter()
    try:
        out = call(*inputs, training=training)
    finally:
        profile.label = previous
    record.forward_s.append(time.perf_counter() - start)
    if record.kind in _PRODUCT_LAYERS and not record.forward_flops:
        kernel = next((t for key, t in layer.weights().items() if key.split("/")[-1] == "kernel"), None)
        main = out[0] if isinstance(out, tuple) else out
        if kernel is not None:
            positions = main.shape[:-1] if shape is None else (main.shape[0], *shape[:-1])
            record.forward_flops = 2 * int(np.prod(positions)) * kernel.size
            # the kernel's gradient always; the input's only when something before the node learns
            record.backward_flops = record.forward_flops * (1 + any(t.requires_grad for t in inputs))
    return out
