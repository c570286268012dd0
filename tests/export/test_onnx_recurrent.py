"""simple_rnn, lstm, gru and bidirectional exported on ONNX's RNN/LSTM/GRU ops and compared with dlcli's predict:
gate orders, reset_after's two bias rows, every activation, and masks from mask_zero wherever the padding lies
(after the data, before it as Keras pads by default, holes, a row with no valid step), return_sequences and the
mask it hands on, return_state ports and initial states in a graph model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.export.exports import checked

Inputs = Callable[[np.random.Generator], dict[str, np.ndarray]]
STEPS, VOCAB = 7, 6
# rows: no padding, padding after, padding before, holes, nothing valid, one step at the end, one at the start
IDS = np.array([[3, 1, 4, 1, 5, 2, 2], [3, 1, 4, 0, 0, 0, 0], [0, 0, 0, 2, 5, 1, 3], [4, 0, 2, 0, 0, 3, 1],
                [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 5], [5, 0, 0, 0, 0, 0, 0]], np.int32)


def floats(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": rng.normal(0.0, 1.0, (5, STEPS, 3)).astype(np.float32)}


def ids(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": IDS}


def on_floats(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"input": {"shape": [STEPS, 3]}, "layers": list(layers)}


def on_masked_ids(*layers: dict[str, Any]) -> dict[str, Any]:
    embedding = {"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True}
    return {"input": {"shape": [STEPS], "dtype": "int32"}, "layers": [embedding, *layers]}


CASES: dict[str, tuple[dict[str, Any], Inputs]] = {}
VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "_relu": {"activation": "relu"},
    "_linear_without_bias": {"activation": "linear", "use_bias": False},
    "_sigmoid": {"activation": "sigmoid"},
}
GATED_VARIANTS: dict[str, dict[str, Any]] = {
    "_linear_gates": {"recurrent_activation": "linear"},
    "_tanh_gates_relu": {"recurrent_activation": "tanh", "activation": "relu"},
}
for kind in ("simple_rnn", "lstm", "gru"):
    variants = {**VARIANTS, **(GATED_VARIANTS if kind != "simple_rnn" else {})}
    if kind == "gru":
        variants["_reset_before"] = {"reset_after": False}
    for suffix, keys in variants.items():
        layer = {"type": kind, "units": 4, **keys}
        CASES[f"{kind}_last{suffix}"] = (on_floats(layer), floats)
        CASES[f"{kind}_sequences_masked{suffix}"] = (on_masked_ids({**layer, "return_sequences": True}), ids)
    CASES[f"{kind}_last_masked"] = (on_masked_ids({"type": kind, "units": 4}), ids)
    CASES[f"{kind}_sequences_then_dense_masked"] = (on_masked_ids(
        {"type": kind, "units": 4, "return_sequences": True}, {"type": "dense", "units": 2, "activation": "softmax"}),
        ids)
    for mode in ("concat", "sum", "mul", "ave"):
        inner = {"type": kind, "units": 3}
        CASES[f"bidirectional_{kind}_{mode}"] = (on_floats({"type": "bidirectional", "layer": inner,
                                                            "merge_mode": mode}), floats)
        CASES[f"bidirectional_{kind}_{mode}_sequences_masked"] = (on_masked_ids(
            {"type": "bidirectional", "layer": {**inner, "return_sequences": True}, "merge_mode": mode}), ids)
    CASES[f"bidirectional_{kind}_last_masked"] = (on_masked_ids(
        {"type": "bidirectional", "layer": {"type": kind, "units": 3}}), ids)


def _encoder_decoder(kind: str) -> tuple[dict[str, Any], Inputs]:
    """An encoder's final states (return_state ports) start a decoder; a second decoder starts from graph inputs;
    both read masked ids, and the states themselves are outputs too."""
    states = ["state_h", "state_c"] if kind == "lstm" else ["state_h"]
    embedding = {"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True}
    document = {
        "inputs": {"source": {"shape": [STEPS], "dtype": "int32"}, "target": {"shape": [STEPS], "dtype": "int32"},
                   **{f"given_{state}": {"shape": [4]} for state in states}},
        "nodes": {"source_vectors": {**embedding, "input": "source"},
                  "target_vectors": {**embedding, "input": "target"},
                  "encoder": {"type": kind, "units": 4, "return_state": True, "input": "source_vectors"},
                  "decoder": {"type": kind, "units": 4, "return_sequences": True,
                              "inputs": ["target_vectors", *(f"encoder.{state}" for state in states)]},
                  "started": {"type": kind, "units": 4, "return_state": True,
                              "inputs": ["target_vectors", *(f"given_{state}" for state in states)]},
                  "states": {"type": "concatenate", "inputs": ["encoder", *(f"started.{s}" for s in states)]},
                  "next": {"type": "dense", "units": 3, "activation": "softmax", "input": "decoder"}},
        "outputs": {"next": {"loss": "mse"}, "states": {"loss": "mse"}}}

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"source": IDS, "target": IDS[::-1].copy(),
                **{f"given_{state}": rng.normal(0, 1, (len(IDS), 4)).astype(np.float32) for state in states}}

    return document, inputs


for kind in ("simple_rnn", "lstm", "gru"):
    CASES[f"{kind}_return_state_and_initial_states_in_a_graph"] = _encoder_decoder(kind)


def _two_masks_merged() -> tuple[dict[str, Any], Inputs]:
    """Two masked embeddings added: the merge ANDs their masks (a step is data where it is in both), as Keras."""
    embedding = {"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True}
    document = {"inputs": {"a": {"shape": [STEPS], "dtype": "int32"}, "b": {"shape": [STEPS], "dtype": "int32"}},
                "nodes": {"a_vectors": {**embedding, "input": "a"}, "b_vectors": {**embedding, "input": "b"},
                          "both": {"type": "add", "inputs": ["a_vectors", "b_vectors"]},
                          "read": {"type": "gru", "units": 4, "return_sequences": True, "input": "both"}},
                "outputs": {"read": {"loss": "mse"}, "both": {"loss": "mse"}}}
    return document, lambda rng: {"a": IDS, "b": np.roll(IDS, 1, axis=1)}


CASES["gru_after_two_masks_merged"] = _two_masks_merged()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_recurrent_layer_exports_and_onnxruntime_matches_dlcli(case: str, tmp_path: Path) -> None:
    document, inputs = CASES[case]
    checked(tmp_path, document, inputs(np.random.default_rng(3)))


def test_a_masked_sequence_output_hands_its_mask_on_as_an_output(tmp_path: Path) -> None:
    document, inputs = CASES["lstm_sequences_masked"]
    report = checked(tmp_path, document, inputs(np.random.default_rng(0)))
    assert [o.name for o in report.outputs] == ["lstm", "lstm.mask"]
