"""The converter table: each layer type's ONNX form, keyed by the name the layer is registered under, and the
walk that converts a model's nodes in order, handing step masks on as dlcli's graph does.

Why a table here and not a method on each layer: ONNX is one export format among the ones the registry may
hold, and the layers (left of export in the import order) stay free of it; the ONNX rules (NCHW convolutions,
gate orders, opset differences) then have one home, and tests/export/ checks that every registered layer type
has an entry, so a new layer without one fails at once.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.export.onnx.builder import OnnxGraph, StepMask, Value
from dlcli.graph import Model

# converter(graph, layer, inputs, hint) -> the main output, or (main, *extra outputs in extra_outputs() order)
Converter = Callable[[OnnxGraph, Any, list[Value], str], "Value | tuple[Value, ...]"]
CONVERTERS: dict[str, Converter] = {}


def _gelu(graph: OnnxGraph, x: str, hint: str) -> str:
    """0.5 x (1 + erf(x / sqrt(2))): opset 20's Gelu op is not in the default opset 17."""
    erf = graph.node("Erf", [graph.node("Mul", [x, graph.scalar(0.7071067811865476, "float32")], hint)], hint)
    half_x = graph.node("Mul", [x, graph.scalar(0.5, "float32")], hint)
    return graph.node("Mul", [half_x, graph.node("Add", [erf, graph.scalar(1.0, "float32")], hint)], hint)


def _gelu_approximate(graph: OnnxGraph, x: str, hint: str) -> str:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the order dlcli's activation computes it in."""
    cube = graph.node("Mul", [graph.node("Mul", [x, x], hint), x], hint)
    inner = graph.node("Add", [x, graph.node("Mul", [cube, graph.scalar(0.044715, "float32")], hint)], hint)
    tanh = graph.node("Tanh", [graph.node("Mul", [inner, graph.scalar(0.7978845608028654, "float32")], hint)], hint)
    half = graph.node("Mul", [graph.node("Add", [tanh, graph.scalar(1.0, "float32")], hint),
                              graph.scalar(0.5, "float32")], hint)
    return graph.node("Mul", [x, half], hint)


def _silu(graph: OnnxGraph, x: str, hint: str) -> str:
    """x * sigmoid(x)."""
    return graph.node("Mul", [x, graph.node("Sigmoid", [x], hint)], hint)


# the activation table's rows as ONNX ops (None: the identity), or a function writing a composite form; tests check
# every registered activation is here or in NOT_EXPORTABLE_YET
ACTIVATIONS: dict[str, str | None | Callable[[OnnxGraph, str, str], str]] = {
    "linear": None, "relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax",
    "log_softmax": "LogSoftmax", "gelu": _gelu, "gelu_approximate": _gelu_approximate, "silu": _silu}

# registered layer types and activations with no ONNX form yet: `dlcli export` refuses a model that uses one with a
# SpecError (exit 2). The one list of them; docs/cli.md's export section names them, and tests/export/ checks that
# every registered name is either converted or here, and that nothing here has a converter (remove it when it does)
NOT_EXPORTABLE_YET: frozenset[str] = frozenset()


def converts(*layer_types: str) -> Callable[[Converter], Converter]:
    """Decorator: the ONNX converter of these registered layer types."""

    def register(function: Converter) -> Converter:
        for layer_type in layer_types:
            if layer_type in CONVERTERS:
                raise TypeError(f"layer type {layer_type!r} has two ONNX converters")
            CONVERTERS[layer_type] = function
        return function

    return register


def activate(graph: OnnxGraph, name: str, x: str, hint: str) -> str:
    """x through the activation registered as `name` (softmax and log_softmax over the last axis)."""
    if name in registry.activations:  # an alias (swish) is written as the activation it names (silu)
        name = registry.activations.entry(name).alias_of or name
    if name not in ACTIVATIONS:
        raise SpecError(f"{hint}: the activation {name!r} has no ONNX form yet; it cannot be exported")
    op = ACTIVATIONS[name]
    if op is None:
        return x
    if callable(op):
        return op(graph, x, hint)
    return graph.node(op, [x], hint, axis=-1) if op in ("Softmax", "LogSoftmax") else graph.node(op, [x], hint)


def as_float(graph: OnnxGraph, value: Value, hint: str) -> Value:
    """The value as float32, cast when it holds integers (raw uint8 pixels, int ids), as dlcli's layers cast."""
    if value.dtype == "float32":
        return value
    return Value(graph.cast(value.name, "float32", hint), value.shape, "float32", value.mask)


def convert_model(graph: OnnxGraph, model: Model, inputs: dict[str, Value]) -> dict[str, Value]:
    """Every node's value (and every port's, `<node>.<port>`), converted in the model's order from `inputs`."""
    values: dict[str, Value] = dict(inputs)
    for node in model.nodes:
        layer = node.layer
        convert = CONVERTERS.get(layer.spec.type)
        if convert is None:
            raise SpecError(f"{node.key}: layer type {layer.spec.type!r} has no ONNX converter yet, so this model "
                            "cannot be exported to onnx")
        sources = [values[name] for name in node.inputs]
        out = convert(graph, layer, sources, node.name)
        if isinstance(out, tuple):  # the main output, then the ports extra_outputs names
            out, *extras = out
            values.update({f"{node.name}.{port}": value for port, value in zip(layer.extra_outputs(), extras)})
        if layer.keeps_mask and out.mask is None:
            out = out.with_mask(handed_on_mask(graph, sources, out, node.name))
        values[node.name] = out
    return values


def handed_on_mask(graph: OnnxGraph, inputs: Sequence[Value], out: Value, hint: str) -> StepMask | None:
    """graph._handed_on_mask in ONNX: the inputs' step mask for an output with the same (batch, time) axes,
    AND-ed over the inputs that have one of that length; None when no input has one or it does not fit."""
    masks = [value.mask for value in inputs if value.mask is not None]
    if not masks or not out.shape or out.shape[0] != masks[0].steps:
        return None
    combined = masks[0]
    for mask in masks[1:]:
        if mask.steps == combined.steps and mask.name != combined.name:
            combined = StepMask(graph.node("And", [combined.name, mask.name], f"{hint}/mask"), combined.steps)
    return combined

