"""A ctc output end to end: its targets checked, a short run that learns, `dlcli predict` writing label sequences."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli.decoding import ctc_beam_search_decode
from dlcli.errors import DataError, SpecError
from dlcli.spec.load import validate_spec
from dlcli.train.fit import fit_run
from dlcli.train.loop import predict
from dlcli.train.run_checkpoints import load_run

STEPS, BLANK = 8, 3


def collapse(path: np.ndarray) -> list[int]:
    """Repeats merged, blanks dropped."""
    return [int(c) for j, c in enumerate(path) if (j == 0 or c != path[j - 1]) and c != BLANK]


def write_sequences(path: Path, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy one-hot steps of a random path over 3 labels and the blank; the target is the path's labelling."""
    rng = np.random.default_rng(seed)
    paths = rng.integers(0, 4, size=(n, STEPS))
    labels = np.full((n, STEPS), -1)
    for i, p in enumerate(paths):
        seq = collapse(p)
        labels[i, :len(seq)] = seq
    x = (np.eye(4)[paths] * 2 + rng.normal(scale=0.5, size=(n, STEPS, 4))).astype(np.float32)
    np.savez(path, x=x, y=labels)
    return x, labels


def spec_doc(data: Path, **loss: Any) -> dict[str, Any]:
    return {"name": "ctc", "seed": 1, "data": {"train": str(data), "validation_split": 0.25},
            "model": {"input": {"shape": [STEPS, 4]},
                      "layers": [{"type": "dense", "units": 4, "activation": "softmax"}]},
            "train": {"loss": {"type": "ctc", **loss}, "optimizer": {"type": "adam", "learning_rate": 0.05},
                      "metrics": ["sequence_accuracy", "edit_distance"], "epochs": 6, "batch_size": 32}}


@pytest.fixture(scope="module")
def ctc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ctc")
    x, _ = write_sequences(folder / "seq.npz")
    np.save(folder / "x.npy", x[:5])
    fit_run(validate_spec(spec_doc(folder / "seq.npz"), Path("s.toml")), folder / "run", [])
    return folder


def test_a_short_run_learns_to_read_the_sequences(ctc_run: Path) -> None:
    final = json.loads((ctc_run / "run" / "summary.json").read_text())["final"]
    assert final["val_sequence_accuracy"] > 0.9 and final["val_edit_distance"] < 0.05
    assert final["val_loss"] < 1.0


def test_predict_writes_label_sequences_in_every_format(ctc_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ctc_run)
    expected = [collapse(np.argmax(row, axis=-1)) for row in np.load("x.npy")]  # the data are that clear
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", "run", "x.npy", "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert records == [{"index": i, "labels": labels} for i, labels in enumerate(expected)]
    plain = runner.invoke(cli, ["predict", "run", "x.npy"]).output.splitlines()
    assert plain == [f"index={i} labels={','.join(map(str, labels))}" for i, labels in enumerate(expected)]
    _, model, _, _, _ = load_run(Path("run"))
    beams = ctc_beam_search_decode(predict(model, {"input": np.load("x.npy")}, 32)[0][next(iter(model.outputs))], 4)
    result = runner.invoke(cli, ["predict", "run", "x.npy", "--beam-width", "4", "--json"])
    assert [json.loads(line)["labels"] for line in result.output.splitlines()] == \
        [[int(v) for v in row if v >= 0] for row in beams]
    for suffix in (".csv", ".jsonl", ".npy"):
        assert runner.invoke(cli, ["predict", "run", "x.npy", "--output", f"p{suffix}"]).exit_code == 0
    with open("p.csv", newline="") as handle:
        assert [row["labels"] for row in csv.DictReader(handle)] == [" ".join(map(str, s)) for s in expected]
    assert [json.loads(line)["labels"] for line in Path("p.jsonl").read_text().splitlines()] == expected
    padded = np.load("p.npy", allow_pickle=False)
    assert padded.shape == (5, max(map(len, expected)))
    assert [[int(v) for v in row if v >= 0] for row in padded] == expected and padded.min() == -1


def test_beam_width_on_a_model_without_ctc_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("r.npz", x=rng.normal(size=(32, 2)).astype(np.float32), y=rng.normal(size=32).astype(np.float32))
    doc = {"name": "r", "data": {"train": "r.npz"}, "model": {"input": {"shape": [2]},
                                                             "layers": [{"type": "dense", "units": 1}]},
           "train": {"loss": "mse", "epochs": 1}}
    fit_run(validate_spec(doc, tmp_path / "r.toml"), tmp_path / "run", [])
    np.save("x.npy", np.zeros((2, 2), np.float32))
    result = CliRunner().invoke(cli, ["predict", "run", "x.npy", "--beam-width", "3"])
    assert result.exit_code == 2
    assert "--beam-width decodes outputs trained with the ctc loss" in result.output


def _check(tmp_path: Path, labels: np.ndarray, **loss: Any) -> None:
    x = np.zeros((len(labels), STEPS, 4), np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    doc = copy.deepcopy(spec_doc(tmp_path / "d.npz", **loss))
    doc["train"]["epochs"] = 1
    del doc["data"]["validation_split"]  # rows keep their places
    fit_run(validate_spec(doc, Path("s.toml")), tmp_path / "run", [])


@pytest.mark.parametrize("labels,message", [
    (np.array([[0, 1, -1], [2, 3, -1]]), "found 3 at row 1, position 1"),  # 3 is the blank
    (np.array([[0, 4, -1], [2, 1, -1]]), "found 4 at row 0, position 1"),
    (np.array([[0, -2, -1], [2, 1, -1]]), "found -2 at row 0"),
    (np.array([[0.0, 1.5], [1.0, 2.0]]), "ctc needs integer labels, found 1.5"),
    (np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]), "row 0 has 5 labels (4 repeated) that need 9 steps, but the "
                                                   "output has 8 (2 of 2 rows too long)"),
])
def test_ctc_targets_are_checked_before_training(tmp_path: Path, labels: np.ndarray, message: str) -> None:
    with pytest.raises(DataError) as info:
        _check(tmp_path, labels)
    # the key and the file first (data.train: d.npz: ...), then the target
    assert str(info.value).startswith(f"data.train: {tmp_path / 'd.npz'}: train target 'dense': ")
    assert message in str(info.value)


def test_float_labels_with_integral_values_and_a_chosen_blank_are_accepted(tmp_path: Path) -> None:
    _check(tmp_path, np.array([[3.0, 3.0, -1.0], [2.0, 1.0, 3.0]] * 4), blank=0)


def test_a_blank_outside_the_classes_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="blank = 4, but the output has 4 classes"):
        _check(tmp_path, np.array([[0, 1], [2, 1]]), blank=4)


def _padded_with(labels: np.ndarray, fill: int, dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """(labels with every -1 replaced by fill, each row's number of labels): Keras' label and label_length."""
    lengths = (labels >= 0).sum(axis=1)
    return np.where(labels >= 0, labels, fill).astype(dtype), lengths


@pytest.mark.parametrize("fill,dtype", [(0, np.int64), (3, np.uint8), (2, np.float32)])
def test_a_lengths_array_beside_the_targets_replaces_minus_one_padding(tmp_path: Path, fill: int,
                                                                        dtype: type) -> None:
    x, labels = write_sequences(tmp_path / "minus_one.npz", n=96)
    y, lengths = _padded_with(labels, fill, dtype)  # fill 0 and 2 are labels and 3 the blank: only lengths tell
    np.savez(tmp_path / "lengths.npz", x=x, y=y, y_lengths=lengths)
    finals = []
    for name in ("minus_one", "lengths"):
        doc = spec_doc(tmp_path / f"{name}.npz")
        doc["train"]["epochs"] = 2
        fit_run(validate_spec(doc, Path("s.toml")), tmp_path / f"run-{name}", [])
        finals.append(json.loads((tmp_path / f"run-{name}" / "summary.json").read_text())["final"])
    assert finals[0] == finals[1] and np.isfinite(finals[0]["loss"])


def test_eval_reads_the_lengths_array_of_its_data_file(ctc_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ctc_run)
    x, labels = write_sequences(Path("held.npz"), n=64, seed=5)
    y, lengths = _padded_with(labels, 1)
    np.savez("held_lengths.npz", x=x, y=y, y_lengths=lengths)
    results = [json.loads(CliRunner().invoke(cli, ["eval", "run", "--data", f"{name}.npz", "--json"]).output
                          .splitlines()[-1]) for name in ("held", "held_lengths")]
    for result in results:
        del result["data"]
    assert results[0] == results[1] and results[0]["sequence_accuracy"] > 0.9


@pytest.mark.parametrize("lengths,message", [
    (np.array([1, 2, 3]), "needs one length per example, shape [4], found shape [3]"),
    (np.array([[1, 2], [3, 4], [0, 1], [2, 2]]), "needs one length per example, shape [4], found shape [4, 2]"),
    (np.array([1, -1, 2, 0]), "row 1 has length -1, outside [0, 3] (the labels' width); 1 such rows"),
    (np.array([1, 2, 4, 5]), "row 2 has length 4, outside [0, 3] (the labels' width); 2 such rows"),
    (np.array([1.0, 2.5, 1.0, 0.0]), "lengths must be integers, found dtype float64"),
])
def test_a_bad_lengths_array_is_a_data_error_naming_it(tmp_path: Path, lengths: np.ndarray, message: str) -> None:
    labels = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1], [0, 0, 0]])
    np.savez(tmp_path / "d.npz", x=np.zeros((4, STEPS, 4), np.float32), y=labels, y_lengths=lengths)
    doc = spec_doc(tmp_path / "d.npz")
    del doc["data"]["validation_split"]
    with pytest.raises(DataError) as info:
        fit_run(validate_spec(doc, Path("s.toml")), tmp_path / "run", [])
    assert f"d.npz: 'y_lengths': {message}" in str(info.value)
