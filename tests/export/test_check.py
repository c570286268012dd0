"""The check against dlcli's predict: what passes and fails (the tolerance near zero, NaN, masks, shapes), and a file
whose weights were changed after export fails it, naming the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dlcli.errors import ExportCheckError
from dlcli.export import check_export
from dlcli.export.check import compare_values
from tests.export.exports import export_case


def test_values_pass_within_atol_plus_rtol_times_dlclis_value() -> None:
    expected = np.array([[100.0, 1.0, 0.0, 1e-9]], np.float32)
    inside = expected + np.array([[9e-3, 1.09e-5, 9e-6, -9e-6]], np.float32)
    result = compare_values("out", inside, expected, rtol=1e-4, atol=1e-5)
    assert result.passed and result.max_abs == pytest.approx(9e-3, rel=1e-3)
    # relative error only over values above atol: 9e-3 / 100 and 1.09e-5 / 1, not 9e-6 / 1e-9
    assert result.max_rel == pytest.approx(9e-5, rel=1e-3)
    outside = expected + np.array([[0.0, 0.0, 2e-5, 0.0]], np.float32)
    failed = compare_values("out", outside, expected, rtol=1e-4, atol=1e-5)
    assert not failed.passed and "example 0, index [2]" in failed.problem and "dlcli 0" in failed.problem


def test_nan_matches_only_nan() -> None:
    expected = np.array([[np.nan, 1.0]], np.float32)
    assert compare_values("out", expected.copy(), expected, 1e-4, 1e-5).passed
    found = np.array([[0.0, 1.0]], np.float32)
    result = compare_values("out", found, expected, 1e-4, 1e-5)
    assert not result.passed and result.max_abs == np.inf


def test_masks_must_be_equal_and_shapes_must_agree() -> None:
    mask = np.array([[True, False, True]])
    assert compare_values("out.mask", mask.copy(), mask, 1e-4, 1e-5).passed
    flipped = compare_values("out.mask", ~mask, mask, 1e-4, 1e-5)
    assert not flipped.passed and flipped.problem == "3 mask entries differ"
    shaped = compare_values("out", np.zeros((2, 3)), np.zeros((2, 4)), 1e-4, 1e-5)
    assert not shaped.passed and shaped.problem == "shape [2, 3], dlcli gives [2, 4]"


def test_a_file_whose_weights_changed_after_export_fails_the_check_naming_the_output(tmp_path: Path) -> None:
    document = {"inputs": {"x": {"shape": [4]}},
                "nodes": {"hidden": {"type": "dense", "units": 3, "input": "x"},
                          "kept": {"type": "dense", "units": 2, "input": "x"},
                          "moved": {"type": "dense", "units": 2, "input": "hidden"}},
                "outputs": {"kept": {"loss": "mse"}, "moved": {"loss": "mse"}}}
    exporter, source, exported = export_case(tmp_path, document)
    inputs = {"x": np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)}
    assert check_export(exporter, exported, source, inputs).passed
    model = onnx.load(exported.path)
    for tensor in model.graph.initializer:
        if tensor.name.startswith("moved/"):
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.001), tensor.name))
    onnx.save(model, exported.path)
    report = check_export(exporter, exported, source, inputs)
    assert [(o.name, o.passed) for o in report.outputs] == [("kept", True), ("moved", False)]
    error = report.failure(exported.path)
    assert isinstance(error, ExportCheckError) and error.exit_code == 1
    assert "in output moved (example" in str(error) and "kept" not in str(error)


def test_a_file_onnxruntime_cannot_load_is_a_failed_check(tmp_path: Path) -> None:
    exporter, source, exported = export_case(tmp_path, {"input": {"shape": [3]}, "layers": [
        {"type": "dense", "units": 2}]})
    exported.path.write_bytes(b"not an onnx file")
    with pytest.raises(ExportCheckError, match="onnxruntime cannot load it"):
        check_export(exporter, exported, source, {"input": np.zeros((2, 3), np.float32)})
