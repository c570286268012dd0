"""The Transformer layers exported on their own and in graphs, run in onnxruntime and compared with dlcli's predict:
layer normalization's axes are in test_onnx_layers.py; here positional embeddings (learned and sinusoidal, masks
handed on), multi-head attention (self, cross with a key, causal, every mask from mask_zero ids)
and the encoder block."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.export.exports import checked
from tests.export.test_onnx_recurrent import IDS, STEPS, VOCAB

Inputs = Callable[[np.random.Generator], dict[str, np.ndarray]]


def floats(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": rng.normal(0.0, 1.0, (5, STEPS, 4)).astype(np.float32)}


def ids(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input": IDS}  # padding after, before, inside, everywhere (tests/export/test_onnx_recurrent.py)


def on_ids(*layers: dict[str, Any], positions: str = "learned", mask_zero: bool = True) -> dict[str, Any]:
    embedding = {"type": "positional_embedding", "sequence_length": STEPS + 2, "input_dim": VOCAB, "output_dim": 4,
                 "positions": positions, "mask_zero": mask_zero}
    return {"input": {"shape": [STEPS], "dtype": "int32"}, "layers": [embedding, *layers]}


def on_floats(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"input": {"shape": [STEPS, 4]}, "layers": list(layers)}


def attention(**keys: Any) -> dict[str, Any]:
    return {"type": "multi_head_attention", "num_heads": 2, "key_dim": 3, **keys}


def encoder(**keys: Any) -> dict[str, Any]:
    return {"type": "transformer_encoder", "embed_dim": 4, "dense_dim": 6, "num_heads": 2, **keys}


def _cross_attention() -> tuple[dict[str, Any], Inputs]:
    """A query over a value and a separate key, the query and value masked each its own way, and the attention
    scores handed on through the node's port to an output of their own."""
    embedding = {"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True}
    document = {
        "inputs": {"query_ids": {"shape": [STEPS], "dtype": "int32"}, "value_ids": {"shape": [STEPS],
                                                                                  "dtype": "int32"},
                   "key": {"shape": [STEPS, 2]}},
        "nodes": {"query": {**embedding, "input": "query_ids"},
                  "value": {**embedding, "output_dim": 5, "input": "value_ids"},
                  "attended": {**attention(value_dim=2, output_shape=4, return_attention_scores=True),
                               "inputs": ["query", "value", "key"]},
                  "head": {"type": "global_average_pooling1d", "input": "attended"},
                  "scores": {"type": "flatten", "input": "attended.attention_scores"}},
        "outputs": {"head": {"loss": "mse"}, "attended": {"loss": "mse"}, "scores": {"loss": "mse"}}}

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"query_ids": IDS, "value_ids": IDS[::-1].copy(),
                "key": rng.normal(0, 1, (len(IDS), STEPS, 2)).astype(np.float32)}

    return document, inputs


def _query_over_value() -> tuple[dict[str, Any], Inputs]:
    """Float queries over masked values, no key (the value is the key), causal across different lengths."""
    document = {
        "inputs": {"query": {"shape": [STEPS - 2, 4]}, "value_ids": {"shape": [STEPS], "dtype": "int32"}},
        "nodes": {"value": {"type": "embedding", "input_dim": VOCAB, "output_dim": 3, "mask_zero": True,
                            "input": "value_ids"},
                  "attended": {**attention(use_causal_mask=True), "inputs": ["query", "value"]}},
        "outputs": {"attended": {"loss": "mse"}}}

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"query": rng.normal(0, 1, (len(IDS), STEPS - 2, 4)).astype(np.float32), "value_ids": IDS}

    return document, inputs


CASES: dict[str, tuple[dict[str, Any], Inputs]] = {
    "positional_embedding_learned_masked": (on_ids({"type": "lstm", "units": 3}), ids),
    "positional_embedding_sinusoidal": (on_ids(positions="sinusoidal", mask_zero=False), ids),
    "multi_head_attention_self": (on_floats(attention()), floats),
    "multi_head_attention_causal_without_bias": (on_floats(attention(use_causal_mask=True, use_bias=False,
                                                                     value_dim=2, output_shape=5)), floats),
    "multi_head_attention_masked_causal": (on_ids(attention(use_causal_mask=True)), ids),
    "multi_head_attention_masked_then_pooled": (on_ids(attention(), {"type": "global_average_pooling1d"}), ids),
    "multi_head_attention_cross_with_key": _cross_attention(),
    "multi_head_attention_query_over_value_causal": _query_over_value(),
    "transformer_encoder": (on_floats(encoder()), floats),
    "transformer_encoder_masked_gelu": (on_ids(encoder(key_dim=2, activation="gelu"),
                                               {"type": "global_max_pooling1d"}), ids),
    "transformer_encoder_sinusoidal_two_blocks": (on_ids(encoder(), encoder(), positions="sinusoidal"), ids),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_transformer_layer_exports_and_onnxruntime_matches_dlcli(case: str, tmp_path: Path) -> None:
    document, inputs = CASES[case]
    checked(tmp_path, document, inputs(np.random.default_rng(7)))

