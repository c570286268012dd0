"""fit_run end to end on small data: determinism, exact resume, callbacks, divergence, run-directory files."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import DataError, DivergedError, SpecError
from dlcli.spec.load import validate_spec
from dlcli.train.fit import fit_run
from dlcli.train.run_checkpoints import load_run
from dlcli.train.callbacks import Callback, Run


def write_blobs(path: Path, n: int = 240, seed: int = 0, classes: int = 3) -> Path:
    """A small 3-class problem in an .npz (x: 2 features, y: integer labels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])[:classes]
    x = (centers[y] + rng.normal(scale=0.6, size=(n, 2))).astype(np.float32)
    np.savez(path, x=x, y=y)
    return path


def spec_doc(train: Path, **train_options: Any) -> dict[str, Any]:
    return {"name": "blobs", "seed": 5,
            "data": {"train": str(train), "validation_split": 0.25},
            "model": {"input": {"shape": [2]},
                      "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                 {"type": "dropout", "rate": 0.2},
                                 {"type": "dense", "units": 3, "activation": "softmax"}]},
            "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                      "metrics": ["accuracy"], "epochs": 4, "batch_size": 16, **train_options}}


def fit(doc: dict[str, Any], run_dir: Path, callbacks: list[Callback] | None = None, **kwargs: Any) -> dict[str, Any]:
    return fit_run(validate_spec(copy.deepcopy(doc), Path("s.toml")), run_dir, callbacks or [], **kwargs)


def weights_digest(checkpoint: Path) -> dict[str, str]:
    arrays, _ = load_checkpoint(checkpoint)
    return {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()}


def test_run_directory_holds_spec_checkpoints_history_and_summary(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    run = tmp_path / "run"
    summary = fit(spec_doc(data), run)
    assert (run / "spec.json").is_file() and json.loads((run / "spec.json").read_text())["name"] == "blobs"
    assert (run / "checkpoints" / "last.safetensors").is_file() and (run / "checkpoints" / "best.safetensors").is_file()
    lines = (run / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 4 and {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(rows[0])
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["epochs_run"] == 4 and on_disk["final"]["val_accuracy"] == summary["final"]["val_accuracy"]
    assert summary["final"]["val_accuracy"] > 0.9
    assert not list(run.rglob("*.tmp*")), "no temp files left behind"
    _, metadata = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert metadata["epoch"] == 4 and metadata["step"] == 4 * 12 and len(metadata["history"]) == 4
    assert set(metadata["rng"]) == {"model", "shuffle"} and metadata["spec"]["name"] == "blobs"


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data), tmp_path / "a")
    fit(spec_doc(data), tmp_path / "b")
    other = spec_doc(data)
    other["seed"] = 6
    fit(other, tmp_path / "c")
    a, b, c = (weights_digest(tmp_path / r / "checkpoints" / "last.safetensors") for r in "abc")
    params = [k for k in a if k.startswith("param/")]
    assert all(a[k] == b[k] for k in a)
    assert any(a[k] != c[k] for k in params)


def test_resume_after_an_epoch_matches_an_uninterrupted_run_bit_for_bit(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data), tmp_path / "straight")
    doc = spec_doc(data)
    doc["train"]["epochs"] = 2
    fit(doc, tmp_path / "resumed")
    fit(spec_doc(data), tmp_path / "resumed", resume=tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    straight = weights_digest(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    resumed = weights_digest(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert straight == resumed
    history = [json.loads(line) for line in (tmp_path / "resumed" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        self.events.append(("start", info))

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        self.events.append(("epoch", dict(logs)))

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        self.events.append(("end", summary))


def test_early_stopping_stops_and_restores_best_weights(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    doc = spec_doc(data, epochs=40, callbacks=[{"type": "early_stopping", "monitor": "val_loss", "patience": 1,
                                                "min_delta": 0.5}])
    recorder = Recorder()
    summary = fit(doc, tmp_path / "run", [recorder])
    epochs = [e for kind, e in recorder.events if kind == "epoch"]
    assert summary["stopped_early"] and len(epochs) < 40
    assert summary["epochs_run"] == len(epochs)


def test_reduce_lr_on_plateau_lowers_the_rate(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    doc = spec_doc(data, epochs=6, callbacks=[{"type": "reduce_lr_on_plateau", "monitor": "val_loss", "patience": 0,
                                               "factor": 0.5, "min_delta": 10.0}])
    fit(doc, tmp_path / "run")
    rates = [json.loads(line)["learning_rate"] for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert rates[0] == pytest.approx(0.01) and rates[-1] < rates[0]
    assert rates == sorted(rates, reverse=True)


def test_the_logged_learning_rate_is_the_optimizers_at_the_end_of_the_epoch(tmp_path: Path) -> None:
    # as Keras 3 logs it (TensorBoard's epoch_learning_rate, ReduceLROnPlateau's and LearningRateScheduler's
    # logs["learning_rate"]: optimizer.learning_rate in on_epoch_end, the schedule at the updates done so far,
    # checked with Keras 3.15.1); dlcli logged the rate the epoch began with: 0.1 and 0.05 here
    data = write_blobs(tmp_path / "blobs.npz")
    halving = {"schedule": "exponential_decay", "initial": 0.1, "decay_steps": 12, "decay_rate": 0.5}
    fit(spec_doc(data, epochs=2, optimizer={"type": "sgd", "learning_rate": halving}), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [row["learning_rate"] for row in rows] == pytest.approx([0.05, 0.025])  # 12 updates an epoch


def test_unknown_monitor_is_a_spec_error_listing_reported_values(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    with pytest.raises(SpecError, match="train.monitor: 'val_acc' is not reported; the run reports loss, accuracy"):
        fit(spec_doc(data, monitor="val_acc"), tmp_path / "run")


def test_a_run_that_never_had_a_best_epoch_names_no_best_checkpoint(tmp_path: Path) -> None:
    """val_loss not finite every epoch (validation rows whose logits overflow): no best.safetensors is ever written, and
    summary.json said "checkpoint": ".../best.safetensors" all the same."""
    data = write_blobs(tmp_path / "blobs.npz")
    # finite, so the data check lets them in; the logits overflow and the loss is NaN
    np.savez(tmp_path / "val.npz", x=np.full((8, 2), 3e38, np.float32), y=np.arange(8) % 3)
    doc = spec_doc(data, epochs=2)
    doc["data"] = {"train": str(data), "validation": str(tmp_path / "val.npz")}
    with np.errstate(all="ignore"):  # as the command line runs it: the overflow is the point
        summary = fit(doc, tmp_path / "run")
    assert [row["val_loss"] for row in map(json.loads, (tmp_path / "run" / "history.jsonl").open())] == \
        ["Infinity", "Infinity"]  # strict JSON's spelling (output_text.json_value)
    assert not (tmp_path / "run" / "checkpoints" / "best.safetensors").exists()
    assert summary["best"] == {"monitor": "val_loss", "best": None, "best_epoch": 0, "wait": 2, "checkpoint": None}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best"]["checkpoint"] is None


def test_divergence_stops_with_exit_5_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # plain SGD with lr * curvature = 4 overshoots: the loss grows ~9x a step and overflows after ~40 epochs
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=x.sum(axis=1).astype(np.float32))
    doc = {"name": "boom", "data": {"train": str(tmp_path / "reg.npz")},
           "model": {"input": {"shape": [2]}, "layers": [{"type": "dense", "units": 1}]},
           "train": {"loss": "mse", "optimizer": {"type": "sgd", "learning_rate": 2.0}, "epochs": 200,
                     "batch_size": 64, "shuffle": False}}
    with pytest.raises(DivergedError, match=r"the loss became (nan|inf) at step (\d+)") as info:
        fit(doc, tmp_path / "run")
    assert info.value.exit_code == 5
    diverged_step = int(str(info.value).split(" at step ")[1].split(" ")[0])
    arrays, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert 1 <= metadata["epoch"] < diverged_step  # one step an epoch: the checkpoint predates the blow-up
    assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("param/"))
    assert f"rolled back to its previous state (epoch {metadata['epoch']})" in str(info.value)


def test_data_errors_name_the_array_and_shapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "wide.npz", x=rng.normal(size=(10, 3)).astype(np.float32), y=np.zeros(10, np.int64))
    with pytest.raises(DataError, match=r"^data.train: .*wide.npz: train input 'input': each example has shape "
                                        r"\[3\], but the model's input takes \[2\]"):  # the file is named too
        fit(spec_doc(tmp_path / "wide.npz"), tmp_path / "r1")
    np.savez(tmp_path / "labels.npz", x=rng.normal(size=(10, 2)).astype(np.float32), y=np.full(10, 7))
    with pytest.raises(DataError, match="7"):
        fit(spec_doc(tmp_path / "labels.npz"), tmp_path / "r2")
    np.savez(tmp_path / "short.npz", x=rng.normal(size=(10, 2)).astype(np.float32), y=np.zeros(9, np.int64))
    with pytest.raises(DataError, match=r"^data.train: .*short.npz: arrays have different numbers of examples "
                                        r"\(first dimension\): train input input has 10, train target dense_1 has 9"):
        fit(spec_doc(tmp_path / "short.npz"), tmp_path / "r3")
    good = write_blobs(tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.npz"):
        fit(spec_doc(tmp_path / "cut.npz"), tmp_path / "r4")
    np.savez(tmp_path / "nan.npz", x=np.full((10, 2), np.nan, np.float32), y=np.zeros(10, np.int64))
    with pytest.raises(DataError, match="NaN|nan|finite"):
        fit(spec_doc(tmp_path / "nan.npz"), tmp_path / "r5")


def test_load_run_restores_the_trained_model(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data), tmp_path / "run")
    spec, model, arrays, metadata, path = load_run(tmp_path / "run", "last")
    assert path.name == "last.safetensors" and spec.name == "blobs"
    for name, tensor in model.parameters().items():
        np.testing.assert_array_equal(tensor.data, arrays[f"param/{name}"])


def test_normalization_adapts_on_training_data_before_the_first_epoch(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(200, 3)) * [1.0, 10.0, 100.0] + [5.0, -50.0, 500.0]).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=(x @ [1.0, 0.1, 0.01]).astype(np.float32))
    doc = {"name": "norm", "data": {"train": str(tmp_path / "r.npz")},
           "model": {"input": {"shape": [3]}, "layers": [{"type": "normalization"}, {"type": "dense", "units": 1}]},
           "train": {"loss": "mse", "epochs": 1, "batch_size": 50}}
    fit(doc, tmp_path / "run")
    arrays, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    np.testing.assert_allclose(arrays["state/normalization/mean"], x.mean(axis=0), rtol=1e-4)
    assert int(arrays["state/normalization/count"]) == 200


def test_steps_per_epoch_limits_each_epoch(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    recorder = Recorder()
    fit(spec_doc(data, epochs=2, steps_per_epoch=3), tmp_path / "run", [recorder])
    _, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert metadata["step"] == 6 and recorder.events[0][1]["steps_per_epoch"] == 3


def test_divergence_names_the_first_layer_with_a_non_finite_output(tmp_path: Path) -> None:
    x = np.full((32, 2), 3e38, np.float32)  # finite, but ten times it is not
    np.savez(tmp_path / "huge.npz", x=x, y=np.zeros(32, np.int64))
    doc = spec_doc(tmp_path / "huge.npz", epochs=1)
    doc["data"]["validation_split"] = 0.0
    doc["model"]["layers"].insert(0, {"type": "rescaling", "scale": 10.0})
    with pytest.raises(DivergedError, match=r"the first non-finite output is layer rescaling "
                                            r"\(model.layers\[0\]\)") as info:
        fit(doc, tmp_path / "run")
    # it diverged at its first step: the message must not point at a checkpoint that does not exist (QA s13 #15)
    assert str(info.value).endswith("No checkpoint was written: the run diverged before its first one, so there "
                                    "is no good state to go back to")
    assert "last good state" not in str(info.value) and not (tmp_path / "run" / "checkpoints").exists()


def test_a_normalization_given_mean_and_variance_keeps_them_through_training(tmp_path: Path) -> None:
    """Keras keeps a Normalization layer's given mean and variance; dlcli adapted it on the data anyway."""
    data = write_blobs(tmp_path / "blobs.npz")
    doc = spec_doc(data, epochs=1)
    doc["model"]["layers"].insert(0, {"type": "normalization", "mean": [1.0, -2.0], "variance": [4.0, 0.25]})
    fit(doc, tmp_path / "run")
    arrays, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    np.testing.assert_array_equal(arrays["state/normalization/mean"], [1.0, -2.0])
    np.testing.assert_array_equal(arrays["state/normalization/variance"], [4.0, 0.25])
    doc["model"]["layers"][0] = {"type": "normalization", "mean": [1.0, -2.0]}
    with pytest.raises(SpecError, match="give mean and variance together"):
        fit(doc, tmp_path / "other")


def test_an_epoch_links_last_to_an_improved_best_and_syncs_each_folder_once(tmp_path: Path, monkeypatch) -> None:
    # each fsync costs milliseconds, and a small model's epoch is a few: an improved epoch wrote best and last
    # (the same state) apart and fsynced the folder after every rename, 10 fsyncs, most of the iris spec's time
    data = write_blobs(tmp_path / "blobs.npz")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    run = tmp_path / "run"
    fit(spec_doc(data), run)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4
    best, last = (run / "checkpoints" / f"{kind}.safetensors" for kind in ("best", "last"))
    _, best_meta = load_checkpoint(best)
    _, last_meta = load_checkpoint(last)
    assert last_meta["epoch"] == 4 and last_meta["history"] == best_meta["history"] or best_meta["epoch"] < 4
    if best_meta["epoch"] == 4:  # the last epoch improved: one file under two names
        assert os.path.samefile(best, last)
    # per epoch: best's file, history.jsonl, history.csv and run.json, then checkpoints/ and the run folder
    per_epoch = 6
    assert len(synced) <= 4 * per_epoch + 10, len(synced)  # + the start (spec.json, run.json twice) and end (50 before)
