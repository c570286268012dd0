"""Every spec in specs/, trained for one short epoch, exported to ONNX and checked against dlcli's predict on its own
test split, as `dlcli export RUN --check` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from dlcli.export import check_export, check_inputs, export_run
from dlcli.spec.load import load_spec
from dlcli.train.fit import fit_run
from tests.mirror import mnist_mirror

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("graph-data")
    subprocess.run([sys.executable, str(REPO / "specs" / "make_graph_data.py"), "--out", str(folder),
                    "--tickets", "200"], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # one mnist_sequences build for the module


@pytest.mark.parametrize("spec_file", sorted(p.name for p in (REPO / "specs").glob("*.toml")))
def test_the_shipped_spec_exports_and_passes_its_check(spec_file: str, graph_data: Path, cache: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mnist_mirror()))
    monkeypatch.setenv("DLCLI_CACHE", str(cache))
    path = REPO / "specs" / spec_file
    overrides = ["train.epochs=1", "train.steps_per_epoch=3"]
    spec = load_spec(path)
    if spec.data.dataset == "fashion_mnist":  # no download in tests: the same model trains on MNIST's format
        overrides.append('data.dataset="mnist"')
    for key in ("train", "test", "validation"):
        value = getattr(spec.data, key)
        if value is not None:
            overrides.append(f'data.{key}="{graph_data / Path(value).name}"')
    fit_run(load_spec(path, overrides), tmp_path / "run", [])
    exporter, source, exported = export_run(tmp_path / "run")
    assert exported.path == tmp_path / "run" / "best.onnx" and exported.size == exported.path.stat().st_size
    model = onnx.load(exported.path)
    assert [i.name for i in model.graph.input] == list(source.model.inputs)
    assert [o.name for o in model.graph.output] == list(source.model.outputs)
    inputs, origin = check_inputs(source, None, 32)
    report = check_export(exporter, exported, source, inputs)
    assert origin == "test" and report.examples == 32
    assert report.passed, [(o.name, o.max_abs, o.max_rel, o.problem) for o in report.outputs]
    assert all(np.isfinite(o.max_abs) for o in report.outputs)
