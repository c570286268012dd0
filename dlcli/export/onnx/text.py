"""text_vectorization in ONNX: raw strings in, token ids (or multi-hot/count rows) out, exactly as dlcli tokenizes.

Exact means the same tokens as dlcli (and Keras 3) for every input, whatever standardize and split say.
Standard ONNX (opset 20) has StringSplit, StringConcat, Equal on strings and ai.onnx.ml's LabelEncoder, and from
them the pieces of the tokenizer, each applied to the texts' UTF-8 as a whole (ASCII bytes never occur inside
another character's encoding, so splitting at an ASCII character is exact):
- lowercasing A-Z only, as tf.strings.lower() does: StringSplit at each capital in turn, and the pieces joined
  back with its small letter between them (StringNormalizer would not do: it follows the C library's locale,
  which onnxruntime needs installed, and lowercases beyond ASCII);
- splitting on whitespace as Keras' tf.strings.split() does: StringSplit at each of the six ASCII whitespace
  characters in turn (StringSplit's own default splits at spaces only), dropping the empty pieces;
- stripping Keras' punctuation: StringSplit at each punctuation character, then the pieces joined back
  (a Loop of StringConcat), which removes exactly those characters;
- the vocabulary: LabelEncoder, unknown tokens to OOV; padding and truncation to output_sequence_length, or
  multi-hot / count rows by ScatterElements.
"""

from __future__ import annotations

import functools
import string
import sys
from typing import Any

import numpy as np

from dlcli.export.onnx.builder import ML_DOMAIN, OnnxGraph, Value
from dlcli.export.onnx.converters import converts
from dlcli.layers.text_vectorization import MASK, PUNCTUATION, WHITESPACE

STRING_OPSET = 20  # StringSplit and StringConcat; Equal on strings since 19


@functools.cache
def punctuation() -> tuple[str, ...]:
    """Every character the layer's standardization strips (Keras' DEFAULT_STRIP_REGEX)."""
    return tuple(sorted(set(PUNCTUATION.findall("".join(map(chr, range(sys.maxunicode + 1)))))))


def _column_of(graph: OnnxGraph, rows: str, value: str, dtype: str, hint: str) -> str:
    """A (rows of `rows`, 1) column holding `value` everywhere."""
    batch = graph.slice(graph.node("Shape", [rows], hint), [0], [1], [0], hint)
    shape = graph.node("Concat", [batch, graph.ints([1])], hint, axis=0)
    return graph.node("Expand", [graph.constant(np.array([[value]], dtype=object if dtype == "string" else dtype),
                                                f"{hint}/fill"), shape], hint)


def _compact(graph: OnnxGraph, pieces: str, hint: str) -> str:
    """(rows, k) strings with each row's non-empty ones moved to the front, in order, and the columns cut to the
    longest row (one column at least, so that later steps always have one)."""
    pieces = graph.node("Concat", [pieces, _column_of(graph, pieces, "", "string", hint)], hint, axis=1)
    filled = graph.cast(graph.node("Not", [graph.node("Equal", [pieces, graph.constant(
        np.array("", dtype=object), f"{hint}/empty")], hint)], hint), "int64", hint)
    shape = graph.node("Shape", [pieces], hint)
    position = graph.node("CumSum", [graph.node("ConstantOfShape", [shape], hint, value=_one()),
                                     graph.scalar(1, "int64")], hint)
    # filled pieces get keys above 2^32, empty ones at most 0: descending, the filled come first, in order
    key = graph.node("Sub", [graph.node("Mul", [filled, graph.scalar(2 ** 32, "int64")], hint), position], hint)
    _, order = graph.node("TopK", [key, graph.slice(shape, [1], [2], [0], hint)], hint, outputs=2, axis=1)
    ordered = graph.node("GatherElements", [pieces, order], hint, axis=1)
    longest = graph.reduce("ReduceMax", graph.reduce("ReduceSum", filled, [1], False, hint), [0], True, hint)
    width = graph.node("Max", [longest, graph.ints([1])], hint)
    return graph.node("Slice", [ordered, graph.ints([0]), width, graph.ints([1])], hint)


def _one() -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ones(1, np.int64))


def _split_at(graph: OnnxGraph, pieces: str, characters: tuple[str, ...], hint: str) -> str:
    """(rows, k) strings split further at every one of `characters`; the non-empty pieces, compacted."""
    for character in characters:
        parts, _ = graph.node("StringSplit", [pieces], hint, outputs=2, since=STRING_OPSET, delimiter=character)
        pieces = _compact(graph, graph.reshape(parts, [-1], hint), hint)
    return pieces


def _joined(graph: OnnxGraph, pieces: str, hint: str) -> str:
    """Each row of (rows, k) strings concatenated into one string (rows,): a Loop over the columns."""
    from onnx import TensorProto, helper

    column = graph.gather(pieces, graph.scalar(0, "int64"), 1, hint)
    count = graph.node("Sub", [graph.node("Gather", [graph.node("Shape", [pieces], hint), graph.scalar(1, "int64")],
                                          hint, axis=0), graph.scalar(1, "int64")], hint)
    step, condition, text = (graph.fresh(f"{hint}/loop/{what}") for what in ("step", "condition", "text"))
    next_column, piece, condition_out, text_out = (graph.fresh(f"{hint}/loop/{what}")
                                                   for what in ("next", "piece", "condition_out", "text_out"))
    one = graph.fresh(f"{hint}/loop/one")
    body = helper.make_graph(
        [helper.make_node("Constant", [], [one], value=_one()),
         helper.make_node("Add", [step, one], [next_column]),
         helper.make_node("Gather", [pieces, next_column], [piece + "_2d"], axis=1),
         helper.make_node("Squeeze", [piece + "_2d", graph.ints([1])], [piece]),
         helper.make_node("StringConcat", [text, piece], [text_out]),
         helper.make_node("Identity", [condition], [condition_out])],
        f"{hint}/join",
        [helper.make_tensor_value_info(step, TensorProto.INT64, []),
         helper.make_tensor_value_info(condition, TensorProto.BOOL, []),
         helper.make_tensor_value_info(text, TensorProto.STRING, [None])],
        [helper.make_tensor_value_info(condition_out, TensorProto.BOOL, []),
         helper.make_tensor_value_info(text_out, TensorProto.STRING, [None])])
    graph.min_opset = max(graph.min_opset, STRING_OPSET)
    return graph.node("Loop", [count, "", column], hint, body=body)


def _lowercased(graph: OnnxGraph, strings: str, hint: str) -> str:
    """(rows,) strings with A-Z lowercased and every other character kept (Keras' tf.strings.lower())."""
    for capital in string.ascii_uppercase:
        strings = _replaced(graph, strings, capital, capital.lower(), f"{hint}/lower")
    return strings


def _replaced(graph: OnnxGraph, strings: str, old: str, new: str, hint: str) -> str:
    """(rows,) strings with every `old` character replaced by `new`: split at `old`, then joined with `new`."""
    parts, counts = graph.node("StringSplit", [strings], hint, outputs=2, since=STRING_OPSET, delimiter=old)
    # pieces are padded with "" past each row's count (a row of "" has count 0, and a batch of them no column):
    # a column of "" keeps one, and `new` goes before every real piece but the first
    pieces = graph.node("Concat", [parts, _column_of(graph, parts, "", "string", hint)], hint, axis=1)
    width = graph.gather(graph.node("Shape", [pieces], hint), graph.scalar(1, "int64"), 0, hint)
    column = graph.unsqueeze(graph.node("Range", [graph.scalar(0, "int64"), width, graph.scalar(1, "int64")], hint),
                             [0], hint)
    after_old = graph.node("And", [graph.node("Greater", [column, graph.scalar(0, "int64")], hint),
                                   graph.node("Less", [column, graph.unsqueeze(counts, [1], hint)], hint)], hint)
    glued = graph.node("StringConcat", [graph.constant(np.array(new, dtype=object), f"{hint}/new"), pieces], hint,
                       since=STRING_OPSET)
    return _joined(graph, graph.node("Where", [after_old, glued, pieces], hint), hint)


def _stripped(graph: OnnxGraph, strings: str, hint: str) -> str:
    """(rows,) strings without the punctuation characters."""
    pieces = _split_at(graph, graph.unsqueeze(strings, [1], hint), punctuation(), f"{hint}/strip")
    return _joined(graph, pieces, f"{hint}/strip")


@converts("text_vectorization")
def _text_vectorization(graph: OnnxGraph, layer: Any, inputs: list[Value], hint: str) -> Value:
    spec = layer.spec
    graph.min_opset = max(graph.min_opset, STRING_OPSET)  # Equal on strings (19), StringSplit, StringConcat (20)
    texts = graph.squeeze(inputs[0].name, [1], hint)  # (batch, 1) -> (batch,)
    if spec.standardize in ("lower", "lower_and_strip_punctuation"):
        texts = _lowercased(graph, texts, hint)  # before the split: lowercasing makes or removes no whitespace
    strip = spec.standardize in ("strip_punctuation", "lower_and_strip_punctuation")
    if spec.split == "whitespace":
        tokens = _split_at(graph, graph.unsqueeze(texts, [1], hint), tuple(WHITESPACE), f"{hint}/split")
        if strip:  # stripping commutes with splitting (no punctuation character is whitespace): strip each token
            flat = _stripped(graph, graph.node("Reshape", [tokens, graph.ints([-1])], hint), hint)
            tokens = _compact(graph, graph.node("Reshape", [flat, graph.node("Shape", [tokens], hint)], hint), hint)
    else:  # the whole text is one token, and an empty text none
        tokens = graph.unsqueeze(_stripped(graph, texts, hint) if strip else texts, [1], hint)
    vocabulary = layer.get_vocabulary()
    keys = [token for token in vocabulary if token != MASK]
    ids = graph.node("LabelEncoder", [tokens], hint, domain=ML_DOMAIN, keys_strings=keys,
                     values_int64s=[vocabulary.index(token) for token in keys], default_int64=layer.oov_index)
    padding = graph.node("Equal", [tokens, graph.constant(np.array("", dtype=object), f"{hint}/empty")], hint)
    ids = graph.node("Where", [padding, graph.scalar(0, "int64"), ids], hint)
    if spec.output_mode == "int":
        return Value(_fixed_width(graph, ids, spec.output_sequence_length, hint), (spec.output_sequence_length,),
                     "int64")
    width = spec.max_tokens
    weights = graph.cast(graph.node("Not", [padding], hint), "float32", hint)
    batch = graph.slice(graph.node("Shape", [ids], hint), [0], [1], [0], hint)
    zeros = graph.node("ConstantOfShape", [graph.node("Concat", [batch, graph.ints([width])], hint, axis=0)], hint,
                       value=_zero_float())
    counts = graph.node("ScatterElements", [zeros, ids, weights], hint, axis=1, reduction="add", since=16)
    if spec.output_mode == "multi_hot":
        counts = graph.node("Min", [counts, graph.scalar(1.0, "float32")], hint)
    return Value(counts, (width,), "float32")


def _zero_float() -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.zeros(1, np.float32))


def _fixed_width(graph: OnnxGraph, ids: str, width: int, hint: str) -> str:
    """(batch, k) ids cut at, or padded with 0 at the end to, `width` columns (output_sequence_length)."""
    have = graph.slice(graph.node("Shape", [ids], hint), [1], [2], [0], hint)
    missing = graph.node("Max", [graph.node("Sub", [graph.ints([width]), have], hint), graph.ints([0])], hint)
    pads = graph.node("Concat", [graph.ints([0, 0, 0]), missing], hint, axis=0)
    padded = graph.node("Pad", [ids, pads, graph.scalar(0, "int64")], hint)
    return graph.slice(padded, [0], [width], [1], hint)
