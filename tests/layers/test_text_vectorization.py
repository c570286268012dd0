"""text_vectorization: Keras' standardization, vocabulary order, OOV, padding, multi-hot and count outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli.errors import SpecError
from dlcli.layers import Layer, create_layer
from dlcli.layers.text_vectorization import TextVectorizationSpec
from dlcli.spec.keys import describe_keys
from dlcli.spec.load import load_spec, validate_spec
from dlcli.spec.schema import spec_json_schema
from dlcli.tensor import Tensor

TEXTS = np.array([["The cat sat."], ["the dog, the CAT!"], ["a dog"]])

# text_vectorization maps strings to integers or counts: there is no gradient to check, so its entries here are
# forward-only cases (config, adapted texts, input texts, expected output), checked below by
# test_text_vectorization_case_output_and_no_gradient. They sit in a CASES table so that
# tests/layers/test_layers.py::test_every_registered_layer_has_a_case (which reads every CASES table in
# tests/layers) counts the layer as covered; test_layers' gradient test only runs its own module's table.
CASES = {
    "text_vectorization_int": (
        {"type": "text_vectorization", "output_sequence_length": 4}, TEXTS,
        [["the zebra sat"], ["Dog, dog! DOG? dog. dog"], [""]],
        np.array([[2, 1, 5, 0], [3, 3, 3, 3], [0, 0, 0, 0]], np.int64)),
    "text_vectorization_multi_hot": (
        {"type": "text_vectorization", "output_mode": "multi_hot", "max_tokens": 5}, TEXTS,
        [["the the zebra"], ["cat dog"]],
        np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], np.float32)),
    "text_vectorization_count": (
        {"type": "text_vectorization", "output_mode": "count", "max_tokens": 6, "standardize": None}, TEXTS,
        [["the the The zebra"], ["cat cat, dog,"]],  # unstandardized: "The" and "cat," are other tokens
        np.array([[2, 2, 0, 0, 0, 0], [1, 0, 0, 1, 0, 1]], np.float32)),
}


def built(config: dict, texts: np.ndarray | None = None) -> Layer:
    """The layer built for one string per example, adapted on `texts` when given."""
    layer = create_layer(config)
    layer.build((1,), np.random.default_rng(0))
    if texts is not None:
        layer.adapt(texts)
    return layer


def run(layer: Layer, texts: list) -> np.ndarray:
    return layer(Tensor(np.array(texts, dtype=str))).data


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_vectorization_case_output_and_no_gradient(name: str) -> None:
    config, adapt_on, texts, expected = CASES[name]
    layer = built(config, adapt_on)
    out = layer(Tensor(np.array(texts, dtype=str)))
    np.testing.assert_array_equal(out.data, expected)
    assert out.dtype == expected.dtype and out.shape == (len(texts), *layer.build((1,), np.random.default_rng(0)))
    assert out.op is None and not out.requires_grad and not layer.params  # nothing for a gradient to reach
    assert layer.parameter_counts() == (0, 0)  # as Keras' summary counts it
    assert create_layer(layer.spec.model_dump()).spec == layer.spec


def test_vocabulary_is_by_frequency_then_reverse_byte_order_as_keras() -> None:
    layer = built({"type": "text_vectorization", "output_sequence_length": 2}, TEXTS)
    # the: 3, then cat and dog: 2 (reverse order: dog first), then sat and a: 1 (sat first)
    assert layer.get_vocabulary() == ["", "[UNK]", "the", "dog", "cat", "sat", "a"]
    hot = built({"type": "text_vectorization", "output_mode": "multi_hot", "max_tokens": 4}, TEXTS)
    assert hot.get_vocabulary() == ["[UNK]", "the", "dog", "cat"]  # max_tokens counts the reserved OOV entry


def test_max_tokens_counts_padding_and_oov_in_int_mode() -> None:
    layer = built({"type": "text_vectorization", "max_tokens": 4, "output_sequence_length": 5}, TEXTS)
    assert layer.get_vocabulary() == ["", "[UNK]", "the", "dog"] and len(layer.get_vocabulary()) == 4
    np.testing.assert_array_equal(run(layer, [["the cat a dog"]]), [[2, 1, 1, 3, 0]])


def test_adapt_is_deterministic_whatever_the_order_of_the_texts() -> None:
    rng = np.random.default_rng(0)
    words = np.array(["w%d" % i for i in range(30)])
    texts = np.array([[" ".join(rng.choice(words, 6))] for _ in range(40)])
    config = {"type": "text_vectorization", "output_sequence_length": 6, "max_tokens": 20}
    first = built(config, texts).get_vocabulary()
    assert built(config, texts).get_vocabulary() == first
    assert built(config, texts[rng.permutation(len(texts))]).get_vocabulary() == first


def test_adapting_batch_by_batch_learns_the_whole_arrays_vocabulary() -> None:
    rng = np.random.default_rng(1)
    words = np.array(["w%d" % i for i in range(40)])
    texts = np.array([[" ".join(rng.choice(words, 5))] for _ in range(50)])
    config = {"type": "text_vectorization", "output_sequence_length": 6, "max_tokens": 25}
    streamed = built(config)
    streamed.adapt(iter([texts[:9], texts[9:9], texts[9:33], texts[33:]]))  # as a streamed split feeds it
    assert streamed.get_vocabulary() == built(config, texts).get_vocabulary()


@pytest.mark.parametrize("standardize, tokens", [
    ("lower_and_strip_punctuation", ["hello", "world", "dont", "stop", "café"]),
    ("lower", ["hello,", "world!", "don't", "stop-", "café"]),
    ("strip_punctuation", ["Hello", "World", "dont", "STOP", "Café"]),
    (None, ["Hello,", "World!", "don't", "STOP-", "Café"]),
])
def test_standardize_modes(standardize: str | None, tokens: list[str]) -> None:
    layer = built({"type": "text_vectorization", "standardize": standardize, "output_sequence_length": 3})
    assert layer.tokenize(np.array(["Hello, World!\tdon't  STOP- Café"])) == [tokens]


def test_split_none_keeps_each_string_whole_and_odd_characters_survive() -> None:
    layer = built({"type": "text_vectorization", "split": None, "output_mode": "multi_hot", "max_tokens": 4},
                  np.array(["New York", "new york!", "Paris", "a\x00b", "a\x00b"]))
    assert layer.get_vocabulary() == ["[UNK]", "new york", "a\x00b", "paris"]
    np.testing.assert_array_equal(run(layer, [["NEW YORK"], ["a\x00b"], ["Rome"], [""]]),
                                  [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_a_given_vocabulary_is_used_and_never_re_adapted() -> None:
    layer = built({"type": "text_vectorization", "vocabulary": ["good", "bad"], "output_sequence_length": 3})
    layer.adapt(TEXTS)
    assert layer.get_vocabulary() == ["", "[UNK]", "good", "bad"]
    np.testing.assert_array_equal(run(layer, [["Bad, good... ugly"]]), [[3, 2, 1]])


def test_vocabulary_state_round_trips_through_load_state() -> None:
    layer = built({"type": "text_vectorization", "output_sequence_length": 3}, np.array([["naïve café ☕ tea"]]))
    saved = {name: array.copy() for name, array in layer.state.items()}
    assert saved["vocabulary_bytes"].dtype == np.uint8 and saved["vocabulary_offsets"].dtype == np.int64
    fresh = built({"type": "text_vectorization", "output_sequence_length": 3})
    assert fresh.get_vocabulary() == ["", "[UNK]"]
    fresh.load_state(saved)
    assert fresh.get_vocabulary() == layer.get_vocabulary()
    np.testing.assert_array_equal(run(fresh, [["tea ☕"]]), run(layer, [["tea ☕"]]))
    broken = dict(saved, vocabulary_offsets=saved["vocabulary_offsets"][::-1].copy())
    with pytest.raises(ValueError, match="offsets"):
        fresh.load_state(broken)
    other_mode = built({"type": "text_vectorization", "output_mode": "multi_hot", "max_tokens": 9})
    with pytest.raises(ValueError, match="reserves"):
        other_mode.load_state(saved)


# Keras 3.15.1's TextVectorization on texts with non-ASCII capitals (É, Σ, İ) and non-ASCII whitespace (NBSP,
# U+2003, U+0085, \x1c-\x1f), emoji and CRLF, printed by tests/reference/keras_text_vectorization.py. Keras
# lowercases ASCII A-Z only (tf.strings.lower) and splits at the six ASCII whitespace characters only
# (tf.strings.split); Python's str.lower() and str.split() would lowercase É and split at NBSP.
KERAS_TEXTS = ["ÉCOLE école École", "new\u00a0york new york", "ΣΊΣΥΦΟΣ σίσυφος İstanbul ISTANBUL",
               "a\u2003b a b\u0085c", "x\x1cy\x1dz\x1e w\x1fv", "Café 🎉 CAFÉ! 🎉", "line one\r\nline two\r\n",
               "tab\there\vvt\fff\rcr"]
KERAS_PROBES = ["ÉCOLE NEW\u00a0YORK", "İSTANBUL σίσυφος\u0085a"]
KERAS_VOCABULARIES = {
    ("lower_and_strip_punctuation", "whitespace"): (
        ["", "[UNK]", "🎉", "École", "line", "σίσυφος", "ΣΊΣΥΦΟΣ", "İstanbul", "école", "york", "x\x1cy\x1dz\x1e",
         "w\x1fv", "vt", "two", "tab", "one", "new\xa0york", "new", "istanbul", "here", "ff", "cr", "café", "cafÉ",
         "b\x85c", "a\u2003b", "a"],
        [[3, 8, 3, 0, 0, 0], [16, 17, 9, 0, 0, 0], [6, 5, 7, 18, 0, 0], [25, 26, 24, 0, 0, 0], [10, 11, 0, 0, 0, 0],
         [22, 2, 23, 2, 0, 0], [4, 15, 4, 13, 0, 0], [14, 19, 12, 20, 21, 0]],
        [[3, 16, 0, 0, 0, 0], [7, 1, 0, 0, 0, 0]]),
    ("lower", None): (
        ["", "[UNK]", "ΣΊΣΥΦΟΣ σίσυφος İstanbul istanbul", "École école École", "x\x1cy\x1dz\x1e w\x1fv",
         "tab\there\x0bvt\x0cff\rcr", "new\xa0york new york", "line one\r\nline two\r\n", "café 🎉 cafÉ! 🎉",
         "a\u2003b a b\x85c"],
        [[3], [6], [2], [9], [4], [8], [7], [5]],
        [[1], [1]]),
    (None, None): (
        ["", "[UNK]", "ΣΊΣΥΦΟΣ σίσυφος İstanbul ISTANBUL", "ÉCOLE école École", "x\x1cy\x1dz\x1e w\x1fv",
         "tab\there\x0bvt\x0cff\rcr", "new\xa0york new york", "line one\r\nline two\r\n", "a\u2003b a b\x85c",
         "Café 🎉 CAFÉ! 🎉"],
        [[3], [6], [2], [8], [4], [9], [7], [5]],
        [[1], [1]]),
}


@pytest.mark.parametrize("standardize, split", sorted(KERAS_VOCABULARIES, key=str))
def test_vocabulary_and_ids_match_keras_on_non_ascii_capitals_and_whitespace(standardize: str | None,
                                                                             split: str | None) -> None:
    vocabulary, ids, probe_ids = KERAS_VOCABULARIES[standardize, split]
    layer = built({"type": "text_vectorization", "standardize": standardize, "split": split,
                   "output_sequence_length": 6}, np.array(KERAS_TEXTS))
    assert layer.get_vocabulary() == vocabulary
    width = len(ids[0])  # the one-token cases keep the first column: the rest is padding
    np.testing.assert_array_equal(run(layer, [[text] for text in KERAS_TEXTS])[:, :width], ids)
    np.testing.assert_array_equal(run(layer, [[text] for text in KERAS_PROBES])[:, :width], probe_ids)


SPEC_TOML = """name = "t"
[data]
train = "x.csv"
text = "review"
target = "label"
[model]
input = { shape = [1], dtype = "string" }
[[model.layers]]
type = "text_vectorization"
output_mode = "multi_hot"
max_tokens = 10
standardize = "none"
split = "none"
[[model.layers]]
type = "dense"
units = 1
[train]
loss = "mse"
"""


def test_keras_none_is_spelt_none_in_a_spec_file_and_where_the_keys_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(SPEC_TOML)
    layer_spec = load_spec(path).model.layers[0]
    assert (layer_spec.standardize, layer_spec.split) == ("none", "none")
    layer = built(layer_spec.model_dump(), np.array([["Hello,  World!"], ["a b"], ["a b"]]))
    assert layer.get_vocabulary() == ["[UNK]", "a b", "Hello,  World!"]  # as is, and whole
    overridden = load_spec(path, ['model.layers[0].standardize="lower"', 'model.layers[0].split="whitespace"'])
    assert (overridden.model.layers[0].standardize, overridden.model.layers[0].split) == ("lower", "whitespace")
    back = load_spec(path, ['model.layers[0].standardize="none"']).model.layers[0]
    assert back.standardize == "none"
    # Keras' own spelling, None, still works from Python (and in checkpoints' spec dumps) and means the same
    assert create_layer({"type": "text_vectorization", "standardize": None, "split": None, "output_mode": "count",
                         "max_tokens": 4}).spec.model_dump()["standardize"] == "none"
    rows = {row.key: row for row in describe_keys(TextVectorizationSpec)}  # dlcli list, docs/reference.md
    assert rows["standardize"].type == '"lower_and_strip_punctuation" or "lower" or "strip_punctuation" or "none"'
    assert rows["split"].type == '"whitespace" or "none"'
    schema = spec_json_schema()["definitions"]["TextVectorizationSpec"]["properties"]
    assert schema["standardize"]["enum"] == ["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"]
    assert schema["split"]["enum"] == ["whitespace", "none"]


@pytest.mark.parametrize("config, message", [
    ({}, "output_sequence_length is required"),
    ({"output_mode": "multi_hot"}, "max_tokens is required"),
    ({"output_mode": "count", "max_tokens": 5, "output_sequence_length": 3}, "only applies"),
    ({"max_tokens": 2, "output_sequence_length": 3}, "leaves no room"),
    ({"output_sequence_length": 3, "vocabulary": ["a", "[UNK]"]}, "reserved"),
    ({"output_sequence_length": 3, "vocabulary": ["a", "a"]}, "more than once"),
    ({"output_sequence_length": 3, "max_tokens": 3, "vocabulary": ["a", "b"]}, "exceed max_tokens"),
    ({"output_sequence_length": 3, "split": "character"}, "split"),
])
def test_spec_errors_explain_the_fix(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        create_layer({"type": "text_vectorization", **config})


def test_input_must_be_one_string_per_example() -> None:
    layer = create_layer({"type": "text_vectorization", "output_sequence_length": 3})
    with pytest.raises(SpecError, match=r"shape = \[1\].*found per-example shape \[5\]"):
        layer.build((5,), np.random.default_rng(0))
    layer.build((1,), np.random.default_rng(0))
    with pytest.raises(SpecError, match="takes strings"):
        layer(Tensor(np.zeros((2, 1), np.float32)))


def _spec(input_spec: dict, layers: list[dict]) -> dict:
    return {"name": "t", "data": {"train": "x.csv", "text": "review", "target": "label"},
            "model": {"input": input_spec, "layers": layers},
            "train": {"loss": "binary_crossentropy"}}


TEXT_LAYER = {"type": "text_vectorization", "output_mode": "multi_hot", "max_tokens": 10}
DENSE = {"type": "dense", "units": 1, "activation": "sigmoid"}


@pytest.mark.parametrize("input_spec, layers, message", [
    ({"shape": [1], "dtype": "string"}, [DENSE], r"model.layers\[0\]: its input is text"),
    ({"shape": [1]}, [TEXT_LAYER, DENSE], r"model.layers\[0\]: text_vectorization takes text"),
    ({"shape": [1], "dtype": "string"}, [TEXT_LAYER, TEXT_LAYER, DENSE], r"model.layers\[1\]: text_vectorization"),
    ({"shape": [2], "dtype": "string"}, [TEXT_LAYER, DENSE], r"give shape = \[1\]"),
])
def test_spec_checks_that_text_meets_text_vectorization(input_spec: dict, layers: list, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        validate_spec(_spec(input_spec, layers), Path("s.toml"))
    validate_spec(_spec({"shape": [1], "dtype": "string"}, [TEXT_LAYER, DENSE]), Path("s.toml"))
