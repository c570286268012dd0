"""The .onnx file itself: the spec's input and output names, a dynamic batch axis, the metadata, the opsets it can
be written at, the checker and shape inference, and what a missing onnx package says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from dlcli import __version__
from dlcli.errors import SpecError
from dlcli.export import check_export, spec_sha256
from tests.export.exports import export_case

GRAPH = {"inputs": {"image": {"shape": [6, 6, 1]}, "extra": {"shape": [3]}},
         "nodes": {"features": {"type": "conv2d", "filters": 2, "kernel_size": 3, "input": "image"},
                   "pooled": {"type": "global_average_pooling2d", "input": "features"},
                   "joined": {"type": "concatenate", "inputs": ["pooled", "extra"]},
                   "kind": {"type": "dense", "units": 3, "activation": "softmax", "input": "joined"},
                   "level": {"type": "dense", "units": 1, "input": "joined"}},
         "outputs": {"kind": {"loss": "sparse_categorical_crossentropy"}, "level": {"loss": "mse"}}}


def _feeds(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    return {"image": rng.normal(size=(batch, 6, 6, 1)).astype(np.float32),
            "extra": rng.normal(size=(batch, 3)).astype(np.float32)}


def test_names_come_from_the_spec_and_the_batch_axis_is_dynamic(tmp_path: Path) -> None:
    exporter, source, exported = export_case(tmp_path, GRAPH)
    model = onnx.load(exported.path)
    assert [i.name for i in model.graph.input] == ["image", "extra"]
    assert [o.name for o in model.graph.output] == ["kind", "level"]
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert exported.inputs == {"image": "float32 [batch, 6, 6, 1]", "extra": "float32 [batch, 3]"}
    assert exported.outputs == {"kind": "float32 [batch, 3]", "level": "float32 [batch, 1]"}
    session = onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    for batch in (1, 9, 0):
        kind, level = session.run(None, _feeds(batch))
        assert kind.shape == (batch, 3) and level.shape == (batch, 1)
    assert check_export(exporter, exported, source, _feeds(9)).passed


def test_the_metadata_names_the_version_spec_classes_and_epoch(tmp_path: Path) -> None:
    exporter, source, exported = export_case(tmp_path, GRAPH)
    source.metadata["data"] = {"classes": {"kind": ["cat", "dog", "émeu"]}}
    exported = exporter.write(source, tmp_path / "named.onnx", {})
    model = onnx.load(exported.path)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["dlcli_version"] == __version__ and model.producer_name == "dlcli"
    assert props["spec_sha256"] == spec_sha256(source.spec) and len(props["spec_sha256"]) == 64
    assert props["spec_name"] == "export-case" and props["epoch"] == "3"
    assert props["checkpoint"] == "best.safetensors"
    assert json.loads(props["class_names"]) == {"kind": ["cat", "dog", "émeu"]}


def test_the_spec_hash_is_the_same_for_the_same_spec_and_changes_with_any_key(tmp_path: Path) -> None:
    _, source, _ = export_case(tmp_path, GRAPH)
    _, again, _ = export_case(tmp_path, GRAPH)
    changed = {**GRAPH["nodes"], "level": {"type": "dense", "units": 1, "input": "joined", "activation": "relu"}}
    _, other, _ = export_case(tmp_path, {**GRAPH, "nodes": changed})
    # the nodes' order is the order their weights are drawn in: another order is another spec
    _, reordered, _ = export_case(tmp_path, {**GRAPH, "nodes": dict(reversed(list(GRAPH["nodes"].items())))})
    assert spec_sha256(source.spec) == spec_sha256(again.spec)
    assert len({spec_sha256(s.spec) for s in (source, other, reordered)}) == 3


@pytest.mark.parametrize("opset", [14, 17, 18, 20])
def test_every_supported_opset_passes_the_checker_and_shape_inference(opset: int, tmp_path: Path) -> None:
    exporter, source, exported = export_case(tmp_path, GRAPH, options={"opset": opset})
    model = onnx.load(exported.path)
    assert exported.details["opset"] == opset and model.opset_import[0].version == opset
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim][1:] == [3]
    assert check_export(exporter, exported, source, _feeds(4)).passed


def test_an_opset_outside_what_can_be_written_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--opset 13: dlcli writes opset 14 or later"):
        export_case(tmp_path, GRAPH, options={"opset": 13})
    beyond = onnx.defs.onnx_opset_version() + 1
    with pytest.raises(SpecError, match=f"--opset {beyond}: the installed onnx package writes opsets up to"):
        export_case(tmp_path, GRAPH, options={"opset": beyond})


def test_a_missing_onnx_package_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError, as where it is absent
    with pytest.raises(SpecError, match=r"needs the onnx package, which is not installed; install the extra with: "
                                        r"pip install 'dlcli\[onnx\]'"):
        export_case(tmp_path, GRAPH)
