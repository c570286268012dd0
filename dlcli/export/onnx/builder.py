"""OnnxGraph: the nodes, weights and fresh names of the ONNX graph being written, with opset-aware helpers.

Values carry what the converters need beside their ONNX name: the per-example shape (the batch axis is
dynamic and implicit, as in dlcli), the element type, and the name of a (batch, time) step mask when the
value has one (a `mask_zero` embedding's, handed on as dlcli's graph hands it on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

ML_DOMAIN = "ai.onnx.ml"  # LabelEncoder (the text vocabulary)


@dataclass(frozen=True)
class StepMask:
    """A (batch, steps) bool tensor, True where a step holds data; `steps` is its static time length."""

    name: str
    steps: int


@dataclass(frozen=True)
class Value:
    """One tensor of the graph: its ONNX name, per-example shape, element type, and step mask."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # a NumPy dtype name: float32, int32, int64, bool, or "string"
    mask: StepMask | None = None

    def like(self, name: str, shape: tuple[int, ...] | None = None, dtype: str | None = None) -> Value:
        """A new value named `name`, with this one's shape and dtype unless given; no mask (the caller decides)."""
        return Value(name, self.shape if shape is None else tuple(shape), dtype or self.dtype)

    def with_mask(self, mask: StepMask | None) -> Value:
        """This value with `mask` as its step mask."""
        return replace(self, mask=mask)


class OnnxGraph:
    """Collects nodes and initializers, gives every tensor a fresh name, and hides opset differences."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.needs_ml = False  # whether a node of the ai.onnx.ml domain was added
        self.min_opset = 0  # the highest opset a node asked for (StringSplit: 20)
        self._taken: set[str] = set()
        self._constants: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def reserve(self, name: str) -> str:
        """Claim `name` as it is (a model input or output): it must not be taken yet."""
        if name in self._taken:
            raise ValueError(f"the ONNX name {name!r} is used twice")
        self._taken.add(name)
        return name

    def fresh(self, hint: str) -> str:
        """A new unique tensor name built from `hint` (the dlcli node it belongs to, then what it holds)."""
        name, count = hint, 1
        while name in self._taken:
            name, count = f"{hint}_{count}", count + 1
        self._taken.add(name)
        return name

    def constant(self, array: np.ndarray | float | int | Sequence[Any], hint: str, dtype: str | None = None) -> str:
        """An initializer holding `array` (identical small constants are shared); returns its name."""
        from onnx import numpy_helper

        value = np.asarray(array, dtype=dtype) if dtype is not None else np.asarray(array)
        if value.dtype.kind in "UO":
            value = value.astype(object)
            key = ("string", "\x00".join(map(str, value.reshape(-1))).encode("utf-8", "surrogatepass"), value.shape)
        else:
            key = (value.dtype.str, value.tobytes(), value.shape)
        if value.size <= 64 and key in self._constants:
            return self._constants[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        if value.size <= 64:
            self._constants[key] = name
        return name

    def node(self, op_type: str, inputs: Sequence[str], hint: str, outputs: int = 1, domain: str = "",
             since: int = 0, **attributes: Any) -> Any:
        """Add one node; returns its output name, or a list of names when `outputs` > 1. `since`: the opset the
        op needs (the export raises its opset to it, or refuses an explicit lower one)."""
        from onnx import helper

        names = [self.fresh(f"{hint}/{op_type}" + (f":{k}" if outputs > 1 else "")) for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.fresh(f"{hint}/{op_type}/node"),
                                           domain=domain or None, **attributes))
        self.needs_ml |= domain == ML_DOMAIN
        self.min_opset = max(self.min_opset, since)
        return names[0] if outputs == 1 else names

    def ints(self, values: Sequence[int], hint: str = "const/ints") -> str:
        """An int64 1-D constant (shapes, axes, indices)."""
        return self.constant(np.asarray(list(values), np.int64), hint)

    def scalar(self, value: float | int | bool, dtype: str, hint: str = "const/scalar") -> str:
        """A 0-d constant of `dtype`."""
        return self.constant(np.asarray(value, dtype=dtype), hint)

    # -- ops whose signature changed between opsets --------------------------------------------------------

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool, hint: str) -> str:
        """ReduceMean/ReduceMax/ReduceSum/... over `axes` (batch axis 0 counted): axes became an input in opset
        13 (ReduceSum) and 18 (the others)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.ints(axes)], hint, keepdims=int(keepdims))
        return self.node(op_type, [x], hint, axes=list(axes), keepdims=int(keepdims))

    def squeeze(self, x: str, axes: Sequence[int], hint: str) -> str:
        """Drop axes of size 1."""
        return self.node("Squeeze", [x, self.ints(axes)], hint)

    def unsqueeze(self, x: str, axes: Sequence[int], hint: str) -> str:
        """Insert axes of size 1."""
        return self.node("Unsqueeze", [x, self.ints(axes)], hint)

    def reshape(self, x: str, per_example: Sequence[int], hint: str) -> str:
        """Reshape to (batch, *per_example): 0 keeps the batch axis, whatever its size (even 0)."""
        return self.node("Reshape", [x, self.ints([0, *per_example])], hint)

    def transpose(self, x: str, perm: Sequence[int], hint: str) -> str:
        """Permute the axes (batch axis 0 counted)."""
        return self.node("Transpose", [x], hint, perm=list(perm))

    def cast(self, x: str, dtype: str, hint: str) -> str:
        """Convert the element type to `dtype` (a NumPy name)."""
        return self.node("Cast", [x], hint, to=tensor_type(dtype))

    def gather(self, x: str, index: str, axis: int, hint: str) -> str:
        """x's slices at `index` along `axis`."""
        return self.node("Gather", [x, index], hint, axis=axis)

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int], hint: str) -> str:
        """x[starts:ends] along `axes`."""
        return self.node("Slice", [x, self.ints(starts), self.ints(ends), self.ints(axes)], hint)


def tensor_type(dtype: str) -> int:
    """The ONNX element type of a NumPy dtype name (or "string")."""
    from onnx import TensorProto

    return {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "int32": TensorProto.INT32,
            "int64": TensorProto.INT64, "bool": TensorProto.BOOL, "string": TensorProto.STRING,
            "uint8": TensorProto.UINT8}[dtype]
