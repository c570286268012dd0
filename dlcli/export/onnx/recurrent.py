"""ONNX converters of simple_rnn, lstm, gru and bidirectional: ONNX's own RNN, LSTM and GRU ops.

Why the ONNX ops and not a Loop or Scan: they are the form every ONNX runtime optimizes (onnxruntime runs them
as fused CPU kernels), they keep the file small (one node a layer, whatever the length), and Keras' cells are
exactly theirs once the weights are laid out their way:
- kernels are transposed to ONNX's (gates * units, features), one block per gate, directions stacked;
- lstm: Keras' gate order i, f, c, o becomes ONNX's i, o, f, c; gru keeps z, r, h (the same in both), and
  reset_after (Keras' default) is linear_before_reset = 1, whose two bias rows are ONNX's Wb and Rb;
- activations by name, the linear one as Affine(1, 0); dropout is inference's identity.

Masks (from a `mask_zero` embedding) follow dlcli, not ONNX. dlcli skips a masked step wherever it lies: the
state carries over it, and with return_sequences a masked step outputs the carried state (zeros in a
bidirectional layer, as Keras' wrapper does). ONNX's sequence_lens only knows right padding. So the exported
layer first moves each row's valid steps to the front, in order (TopK on a key, then GatherND), runs with
sequence_lens = the valid count, and puts every output step back where dlcli has it: forward, step t shows
the state after the valid steps up to t (the initial state before the first); backward, the state after the
valid steps from t on (zeros past the last). That is exact for right padding, Keras' left padding and masks
with holes alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcli.export.onnx.builder import OnnxGraph, Value
from dlcli.export.onnx.converters import as_float, converts

_ONNX_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "linear": "Affine"}
_OPS = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_LSTM_ORDER = (0, 3, 1, 2)  # Keras' i, f, c, o blocks, taken in ONNX's order i, o, f, c


@dataclass
class _Direction:
    """One direction's results, batch-major: every step's output (batch, steps, units), final h (and c)."""

    sequence: str
    final_h: str
    final_c: str | None


def _blocks(matrix: np.ndarray, gates: int, order: tuple[int, ...]) -> np.ndarray:
    """A Keras (rows, gates * units) kernel as ONNX's (gates * units, rows), its gate blocks in `order`."""
    units = matrix.shape[1] // gates
    return np.concatenate([matrix[:, g * units:(g + 1) * units] for g in order], axis=1).T


def _weights(layer: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, R, B) of one direction in ONNX's layout: W (G*U, F), R (G*U, U), B (2*G*U) = input then recurrent."""
    kind, gates, units = layer.spec.type, layer.gates, layer.spec.units
    order = _LSTM_ORDER if kind == "lstm" else tuple(range(gates))
    w = _blocks(layer.kernel.data, gates, order)
    r = _blocks(layer.recurrent_kernel.data, gates, order)
    bias = np.zeros((2, gates * units), np.float32)
    if layer.bias is not None:
        data = layer.bias.data
        if data.ndim == 2:  # gru with reset_after: Keras' rows are the input and the recurrent bias
            bias[0], bias[1] = data[0], data[1]
        else:
            bias[0] = np.concatenate([data[g * units:(g + 1) * units] for g in order])
    return w, r, bias.reshape(-1)


def _activations(layer: Any) -> list[str]:
    """ONNX's activation list of one direction: RNN (f), LSTM (f, g, h), GRU (f, g)."""
    spec = layer.spec
    act = _ONNX_ACTIVATIONS[spec.activation]
    if spec.type == "simple_rnn":
        return [act]
    gate = _ONNX_ACTIVATIONS[spec.recurrent_activation]
    return [gate, act, act] if spec.type == "lstm" else [gate, act]


def _zeros_like_state(graph: OnnxGraph, x: str, steps: int, units: int, hint: str) -> str:
    """Zeros (batch, steps, units), the batch taken from x's first axis."""
    batch = graph.slice(graph.node("Shape", [x], hint), [0], [1], [0], hint)
    shape = graph.node("Concat", [batch, graph.ints([steps, units])], hint, axis=0)
    return graph.node("ConstantOfShape", [shape], hint)


def _run(graph: OnnxGraph, layers: list[Any], x: Value, initial: list[Value], hint: str) -> list[_Direction]:
    """One ONNX recurrent node for `layers` (one layer, forward or reverse, or a bidirectional pair)."""
    spec, steps = layers[0].spec, x.shape[0]
    units, kind = spec.units, spec.type
    weights = [_weights(layer) for layer in layers]
    w, r, b = (np.stack([part[i] for part in weights]).astype(np.float32) for i in range(3))
    direction = "bidirectional" if len(layers) == 2 else ("reverse" if layers[0].reverse else "forward")
    activations = [name for layer in layers for name in _activations(layer)]
    attributes: dict[str, Any] = {"hidden_size": units, "direction": direction, "activations": activations}
    if "Affine" in activations:  # alpha 1, beta 0 for every function: Affine(x) = x however they are counted
        attributes.update(activation_alpha=[1.0] * len(activations), activation_beta=[0.0] * len(activations))
    if kind == "gru":
        attributes["linear_before_reset"] = int(getattr(spec, "reset_after", True))
    mask = x.mask if x.mask is not None and x.mask.steps == steps else None
    sequence, lengths = x.name, ""
    if mask is not None:
        sequence, lengths = _valid_steps_first(graph, x.name, mask.name, steps, hint)
    inputs = [graph.transpose(sequence, [1, 0, 2], hint), graph.constant(w, f"{hint}/W"),
              graph.constant(r, f"{hint}/R"), graph.constant(b, f"{hint}/B"), lengths]
    for state in initial:  # (batch, units) -> ONNX's (directions, batch, units)
        inputs.append(graph.unsqueeze(state.name, [0], hint))
    outputs = 3 if kind == "lstm" else 2
    results = graph.node(_OPS[kind], inputs, hint, outputs=outputs, **attributes)
    directions = []
    for d, layer in enumerate(layers):
        index = graph.ints([d])
        every = graph.transpose(graph.squeeze(graph.gather(results[0], index, 1, hint), [1], hint), [1, 0, 2], hint)
        final_h = graph.squeeze(graph.gather(results[1], index, 0, hint), [0], hint)
        final_c = graph.squeeze(graph.gather(results[2], index, 0, hint), [0], hint) if kind == "lstm" else None
        if mask is not None:
            every = _steps_in_place(graph, every, mask.name, lengths, steps, units, layer.reverse,
                                    initial[0].name if initial else None, hint)
            if initial:  # a row without a valid step keeps its initial state (ONNX gives zeros)
                empty = graph.node("Equal", [lengths, graph.scalar(0, "int32")], hint)
                empty = graph.unsqueeze(empty, [1], hint)
                final_h = graph.node("Where", [empty, initial[0].name, final_h], hint)
                if final_c is not None:
                    final_c = graph.node("Where", [empty, initial[1].name, final_c], hint)
            if layer.zero_output_for_mask:
                keep = graph.unsqueeze(graph.cast(mask.name, "float32", hint), [2], hint)
                every = graph.node("Mul", [every, keep], hint)
        directions.append(_Direction(every, final_h, final_c))
    return directions


def _valid_steps_first(graph: OnnxGraph, x: str, mask: str, steps: int, hint: str) -> tuple[str, str]:
    """(x with each row's valid steps moved to the front in order, the rows' valid counts as int32)."""
    valid = graph.cast(mask, "float32", hint)
    # key: valid steps 2T - t (above T), masked ones -t (at most 0): sorted descending, valid steps come first,
    # each group in time order; the keys are distinct, so TopK's order is fully determined
    key = graph.node("Sub", [graph.node("Mul", [valid, graph.scalar(2.0 * steps, "float32")], hint),
                             graph.constant(np.arange(steps, dtype=np.float32), f"{hint}/steps")], hint)
    _, order = graph.node("TopK", [key, graph.ints([steps])], hint, outputs=2, axis=1, largest=1, sorted=1)
    moved = graph.node("GatherND", [x, graph.unsqueeze(order, [2], hint)], hint, batch_dims=1)
    counts = graph.reduce("ReduceSum", graph.cast(mask, "int32", hint), [1], False, hint)
    return moved, counts


def _steps_in_place(graph: OnnxGraph, every: str, mask: str, lengths: str, steps: int, units: int, reverse: bool,
                    initial_h: str | None, hint: str) -> str:
    """Outputs of the compacted run (batch, steps, units) put back at dlcli's steps (see the module's doc)."""
    valid = graph.cast(mask, "int64", hint)
    count = graph.node("CumSum", [valid, graph.scalar(1, "int64")], hint)  # valid steps up to and with t
    if not reverse:  # step t shows output count-1, or the initial state when count = 0: index count of [h0, Y]
        first = graph.unsqueeze(initial_h, [1], hint) if initial_h else _zeros_like_state(graph, every, 1, units,
                                                                                           hint)
        table, index = graph.node("Concat", [first, every], hint, axis=1), count
    else:  # step t shows the output of the first valid step at or after t: index count - valid of [Y, 0]
        index = graph.node("Sub", [count, valid], hint)
        past = graph.node("GreaterOrEqual", [index, graph.unsqueeze(graph.cast(lengths, "int64", hint), [1], hint)],
                          hint)
        # past the last valid step: the zero row appended, not the run's own padding outputs, which ONNX leaves
        # unspecified (onnxruntime happens to write zeros there)
        index = graph.node("Where", [past, graph.scalar(steps, "int64"), index], hint)
        table = graph.node("Concat", [every, _zeros_like_state(graph, every, 1, units, hint)], hint, axis=1)
    return graph.node("GatherND", [table, graph.unsqueeze(index, [2], hint)], hint, batch_dims=1)


@converts("simple_rnn", "lstm", "gru")
def _recurrent(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value | tuple[Value, ...]:
    x = as_float(graph, inputs[0], hint)
    initial = [as_float(graph, state, hint) for state in inputs[1:]]
    (result,) = _run(graph, [layer], x, initial, hint)
    units = layer.spec.units
    if layer.spec.return_sequences:
        out = Value(result.sequence, (x.shape[0], units), "float32", x.mask)
    else:
        out = Value(result.final_h, (units,), "float32")
    if not layer.spec.return_state:
        return out
    states = [result.final_h] + ([result.final_c] if result.final_c is not None else [])
    return (out, *(Value(name, (units,), "float32") for name in states))


@converts("bidirectional")
def _bidirectional(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    x = as_float(graph, inputs[0], hint)
    forward, backward = _run(graph, [layer.forward_layer, layer.backward_layer], x, [], hint)
    sequences = layer.spec.layer.return_sequences
    a, b = (forward.sequence, backward.sequence) if sequences else (forward.final_h, backward.final_h)
    mode, units = layer.spec.merge_mode, layer.spec.layer.units
    if mode == "concat":
        out, width = graph.node("Concat", [a, b], hint, axis=-1), 2 * units
    elif mode == "ave":
        out, width = graph.node("Mul", [graph.node("Add", [a, b], hint), graph.scalar(0.5, "float32")], hint), units
    else:
        out, width = graph.node("Add" if mode == "sum" else "Mul", [a, b], hint), units
    shape = (x.shape[0], width) if sequences else (width,)
    return Value(out, shape, "float32", x.mask if sequences else None)
