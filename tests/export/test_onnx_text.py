"""text_vectorization exported in ONNX string ops, every standardize and split (the model takes raw texts), compared
with dlcli's predict on texts that test the tokenizer's edges (every kind of whitespace, punctuation inside words,
capitals inside and outside ASCII, the characters around A-Z, empty texts, OOV)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest

from dlcli.export import check_export
from dlcli.export.onnx.text import punctuation
from dlcli.layers.text_vectorization import PUNCTUATION, WHITESPACE
from tests.export.exports import checked, export_case

Inputs = Callable[[np.random.Generator], dict[str, np.ndarray]]
# adapted on these; checked on them and on unseen words (OOV)
TEXTS = np.array([["Hello, world!  hello\tagain"], ["don't stop: the U.S.A. [UNK] is here"], [""], ["   "],
                  ["a\xa0b\u3000c\nd\x1ce"], ["naïve café, Ünïcode"], ["xxx y,z... (a)b"],
                  ["punct!!! only ??? ,,,"], ["The the THE the"], ["hello world again and again"],
                  ["ÉCOLE École İstanbul ΣΊΣΥΦΟΣ AZaz@[`{ AAA"], ["ZZ"]])
UNSEEN = np.array([["never seen words, here"], ["hello\u2028again\x0bworld"], ["!!!"], ["U.S.A.S.A."],
                   ["x\x85y\u2003z\x0cw\rv\x1fu"]])


def texts(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": np.concatenate([TEXTS, UNSEEN])}


def text_model(**keys: Any) -> dict[str, Any]:
    layer = {"type": "text_vectorization", **keys}
    if keys.get("output_mode", "int") == "int":
        layer.setdefault("output_sequence_length", 6)
    else:
        layer.setdefault("max_tokens", 12)
    return {"input": {"shape": [1], "dtype": "string"}, "layers": [layer]}


CASES: dict[str, tuple[dict[str, Any], Inputs]] = {}
for standardize in (None, "strip_punctuation", "lower", "lower_and_strip_punctuation"):
    for split in ("whitespace", None):
        for mode in ("int", "multi_hot", "count"):
            name = f"text_vectorization_{standardize or 'as_is'}_{split or 'whole'}_{mode}"
            CASES[name] = (text_model(standardize=standardize, split=split, output_mode=mode), texts)
CASES["text_vectorization_int_cut_at_3"] = (text_model(standardize=None, output_sequence_length=3), texts)
CASES["text_vectorization_fixed_vocabulary"] = (text_model(standardize="strip_punctuation",
                                                           vocabulary=["hello", "again", "U", "dont"]), texts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_texts_are_tokenized_in_the_onnx_graph_exactly_as_dlcli_does(case: str, tmp_path: Path) -> None:
    document, inputs = CASES[case]
    checked(tmp_path, document, inputs(np.random.default_rng(0)), texts=TEXTS)
    model = onnx.load(tmp_path / "model.onnx")
    assert [i.name for i in model.graph.input] == ["input"]  # the raw texts, no token ids
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.STRING


def test_the_default_layer_before_an_embedding_exports_whole_taking_raw_texts(tmp_path: Path) -> None:
    document = text_model()  # Keras' default standardize: lower_and_strip_punctuation
    document["layers"] += [{"type": "embedding", "input_dim": 40, "output_dim": 3, "mask_zero": True},
                           {"type": "gru", "units": 2, "return_sequences": True}]
    exporter, source, exported = export_case(tmp_path, document, texts=TEXTS)
    report = check_export(exporter, exported, source, texts(np.random.default_rng(0)))
    assert report.passed and [o.name for o in report.outputs] == ["gru", "gru.mask"]
    assert exported.inputs == {"input": "string [batch, 1]"} and exported.files == [] and exported.notes == []
    props = {p.key: p.value for p in onnx.load(tmp_path / "model.onnx").metadata_props}
    assert "text_layer_inputs" not in props


def test_a_text_model_needs_opset_20_and_an_explicit_lower_one_is_refused(tmp_path: Path) -> None:
    from dlcli.errors import SpecError

    document = text_model(standardize=None)
    _, _, exported = export_case(tmp_path, document, texts=TEXTS)
    assert exported.details["opset"] == 20
    with pytest.raises(SpecError, match="--opset 17: this model needs opset 20"):
        export_case(tmp_path, document, texts=TEXTS, options={"opset": 17})


def test_the_split_characters_are_keras_ascii_whitespace_and_the_layers_punctuation() -> None:
    assert sorted(WHITESPACE) == [c for c in map(chr, range(0x110000)) if c.isspace() and c.isascii()
                                  and c not in "\x1c\x1d\x1e\x1f"] == ["\t", "\n", "\x0b", "\x0c", "\r", " "]
    assert "".join(punctuation()) == "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    assert PUNCTUATION.sub("", "".join(map(chr, range(0x3100)))) == "".join(
        c for c in map(chr, range(0x3100)) if c not in punctuation())
