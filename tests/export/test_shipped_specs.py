"""Every spec in specs/, trained for one short epoch, exported to ONNX and checked against dlcli's predict on its own
test split, as `dlcli export RUN --check` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from dlcli.export import check_export, check_inputs, export_run
from dlcli.spec.load import load_spec
from dlcli.train.fit import fit_run
from tests.mirror import mnist_mirror
from tests.spec_data import spec_data_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # one mnist_sequences build for the module


@pytest.mark.parametrize("spec_file", sorted(p.name for p in (REPO / "specs").glob("*.toml")))
def test_the_shipped_spec_exports_and_passes_its_check(spec_file: str, cache: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mnist_mirror()))
    monkeypatch.setenv("DLCLI_CACHE", str(cache))
    path = REPO / "specs" / spec_file
    overrides = ["train.epochs=1", "train.steps_per_epoch=3"]
    spec = load_spec(path)
    if spec.data.dataset == "fashion_mnist":  # no download in tests: the same model trains on MNIST's format
        overrides.append('data.dataset="mnist"')
    for key in ("train", "test", "validation"):  # the specs' own data files, made small (tests/spec_data.py)
        value = getattr(spec.data, key)
        if value is not None:
            overrides.append(f'data.{key}="{spec_data_path(value)}"')
    fit_run(load_spec(path, overrides), tmp_path / "run", [])
    exporter, source, exported = export_run(tmp_path / "run")
    assert exported.path == tmp_path / "run" / "best.onnx" and exported.size == exported.path.stat().st_size
    model = onnx.load(exported.path)
    assert [i.name for i in model.graph.input] == list(source.model.inputs)
    assert [o.name for o in model.graph.output] == list(source.model.outputs)
    # a spec without test data (the cats-vs-dogs folders) is checked on its validation files
    no_test = spec.data.test is None and spec.data.dataset is None and spec.data.timeseries is None
    held_out = spec_data_path(spec.data.validation) if no_test else None
    inputs, origin = check_inputs(source, held_out, 32)
    report = check_export(exporter, exported, source, inputs)
    assert origin == ("test" if held_out is None else str(held_out))
    assert 8 <= report.examples <= 32  # 32, or all of a small split (tests/spec_data.py: 8 photos, 20 tickets)
    assert report.passed, [(o.name, o.max_abs, o.max_rel, o.problem) for o in report.outputs]
    assert all(np.isfinite(o.max_abs) for o in report.outputs)
