"""Shared by the export tests: tiny models from spec documents with random weights, exported and checked for real
in onnxruntime against dlcli's own predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli.export import CheckReport, ExportSource, check_export
from dlcli.export.onnx import OnnxExporter
from dlcli.graph import Model, build_model
from dlcli.spec.load import validate_spec


def run_document(model: dict[str, Any]) -> dict[str, Any]:
    """A whole spec document around `model` (a sequential stack or a graph); its data and loss are never used."""
    document: dict[str, Any] = {"name": "export-case", "seed": 1, "data": {"train": "unused.npz"}, "model": model,
                                "train": {"batch_size": 4}}
    if "layers" in model:
        document["train"]["loss"] = "mse"
    return document


def randomized(model: Model, rng: np.random.Generator, texts: np.ndarray | None = None) -> Model:
    """Every weight and state drawn at random, so that biases, gate blocks and moving statistics all count (their
    initial zeros and ones would hide a layout mistake); text layers adapt on `texts`."""
    for param in model.parameters().values():
        param.data[...] = rng.normal(0.0, 0.5, param.shape).astype(np.float32)
    for layer in model.layers:
        kind = layer.spec.type
        if kind == "batch_normalization":
            layer.moving_mean[...] = rng.normal(0.0, 1.0, layer.moving_mean.shape)
            layer.moving_variance[...] = rng.uniform(0.3, 2.0, layer.moving_variance.shape)
        elif kind == "normalization" and layer.needs_adapt:
            layer.state["mean"][...] = rng.normal(0.0, 2.0, layer.state["mean"].shape)
            layer.state["variance"][...] = rng.uniform(0.1, 4.0, layer.state["variance"].shape)
        elif kind == "text_vectorization" and texts is not None:
            layer.adapt(texts)
    return model


def export_case(tmp_path: Path, model_document: dict[str, Any], seed: int = 0, texts: np.ndarray | None = None,
                options: dict[str, Any] | None = None) -> tuple[OnnxExporter, ExportSource, Any]:
    """Build, randomize and export a model; (the exporter, the source, the Exported)."""
    spec = validate_spec(run_document(model_document), tmp_path / "case.toml")
    model = randomized(build_model(spec.model, np.random.default_rng(seed), spec), np.random.default_rng(seed + 1),
                       texts)
    source = ExportSource(spec, model, {"epoch": 3, "data": {"classes": {}}}, tmp_path / "best.safetensors")
    exporter = OnnxExporter()
    return exporter, source, exporter.write(source, tmp_path / "model.onnx", options or {})


def checked(tmp_path: Path, model_document: dict[str, Any], inputs: dict[str, np.ndarray], seed: int = 0,
            texts: np.ndarray | None = None) -> CheckReport:
    """The check of a fresh export of `model_document` on `inputs` (default tolerance); fails the test with every
    output's errors unless it passes."""
    exporter, source, exported = export_case(tmp_path, model_document, seed, texts)
    report = check_export(exporter, exported, source, inputs)
    assert report.passed, "\n".join(f"{o.name}: max_abs={o.max_abs:.3g} max_rel={o.max_rel:.3g} {o.problem}"
                                    for o in report.outputs)
    return report
