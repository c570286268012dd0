"""dlcli reproduce: a finished run re-run from its manifest and resolved spec, its data checked by sha256, its final
weights compared bit for bit."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint, save_checkpoint
from dlcli.errors import RunInterruptedError
from dlcli.train.reproduce import compare_weights, environment_differences
from dlcli.train.runs import RunRecord
from tests.cli.runs_fixture import invoke, train, write_spec
from tests.train.test_fit import fit, spec_doc, write_blobs
from tests.train.test_interrupts import SignalAt, digest


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    train(write_spec(tmp_path, epochs=2), tmp_path / "run", "--set", 'train.callbacks=[{type="model_checkpoint", '
                                                                     'every_epochs=1}]')
    return tmp_path / "run"


def test_a_reproduced_run_has_bit_identical_weights(run: Path) -> None:
    result = invoke("reproduce", str(run), "--quiet")
    assert result.exit_code == 0, result.output
    again = run.with_name("run-reproduced")
    assert result.stdout.strip() == f"reproduce original={run} run_dir={again} bit_identical=true tensors=4"
    assert digest(run / "checkpoints" / "last.safetensors") == digest(again / "checkpoints" / "last.safetensors")
    manifest = json.loads((again / "run.json").read_text())
    assert manifest["reproduces"] == {"run_dir": str(run), "run_id": json.loads((run / "run.json").read_text())["run_id"]}
    second = json.loads(invoke("reproduce", str(run), "--json", "--run-dir", str(run.parent / "third")).stdout
                        .splitlines()[-1])
    assert second["event"] == "reproduce" and second["bit_identical"] and second["run_dir"] == str(run.parent / "third")
    assert second["environment_differences"] == []


def test_changed_data_is_refused_before_anything_trains(run: Path) -> None:
    data = run.parent / "blobs.csv"
    data.write_text(data.read_text().replace("cat", "dog", 1))
    result = invoke("reproduce", str(run))
    assert result.exit_code == 3, result.output
    assert f"data.train ({data}) is not the data {run} was trained on" in result.stderr
    assert not run.with_name("run-reproduced").exists()


def test_weights_that_differ_exit_1_naming_the_tensors(run: Path) -> None:
    last = run / "checkpoints" / "last.safetensors"
    arrays, metadata = load_checkpoint(last)
    arrays["param/dense/kernel"] = arrays["param/dense/kernel"] + np.float32(1e-3)  # as if trained elsewhere
    save_checkpoint(last, arrays, metadata)
    result = invoke("reproduce", str(run), "--quiet")
    assert result.exit_code == 1, result.output
    assert "bit_identical=false tensors=4 differing=1" in result.stdout
    assert "1 of 4 tensors differ, by up to 0.001 (param/dense/kernel)" in result.stderr


def test_only_a_finished_run_with_a_manifest_is_reproduced(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    with pytest.raises(RunInterruptedError):
        fit(spec_doc(data, epochs=2), tmp_path / "cut", [SignalAt(3, signal.SIGINT)])
    cut = invoke("reproduce", str(tmp_path / "cut"))
    assert cut.exit_code == 2 and "the run is interrupted, not finished" in cut.stderr
    fit(spec_doc(data, epochs=1), tmp_path / "old")
    (tmp_path / "old" / "run.json").unlink()  # a run from before the manifest
    old = invoke("reproduce", str(tmp_path / "old"))
    assert old.exit_code == 2 and "has no manifest" in old.stderr


def test_environment_differences_name_what_changed(run: Path) -> None:
    record = RunRecord.read(run)
    record.manifest["environment"]["numpy"] = "0.0.1"
    record.manifest["sessions"][-1]["threads"]["numba"] = 99
    differences = environment_differences(record, 2)
    assert f"numpy: 0.0.1 -> {np.__version__}" in differences
    assert "world_size: 1 -> 2" in differences
    assert any(d.startswith("threads.numba: 99 -> ") for d in differences)


def test_compare_weights_sees_a_dtype_change_and_a_missing_tensor(tmp_path: Path) -> None:
    a = {"param/d/kernel": np.ones(3, np.float32), "state/n/mean": np.zeros(2, np.float32)}
    save_checkpoint(tmp_path / "a.safetensors", a, {})
    save_checkpoint(tmp_path / "b.safetensors", {"param/d/kernel": np.ones(3, np.float64)}, {})
    result = compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert not result.identical and result.differing == ["param/d/kernel", "state/n/mean"] and result.tensors == 2
