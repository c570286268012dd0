"""Loggers: csv, tensorboard (read back with TensorBoard's own event reader) and mlflow (a real local file store,
read back through the MLflow client); every epoch logged once across interrupts, kills and resumes; only rank 0
logs under MPI; dlcli log replays a run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dlcli.errors import RunInterruptedError, SpecError
from dlcli.train.callbacks import Callback, Run
from dlcli.train.callbacks.mlflow_logger import param_key
from tests.train import faults
from tests.train.test_fit import fit, spec_doc, write_blobs
from tests.train.test_interrupts import SignalAt

SPEC = """name = "blobs"
seed = 5
[data]
train = "blobs.npz"
validation_split = 0.25
[model]
input = {{ shape = [2] }}
layers = [{{ type = "dense", units = 16, activation = "relu" }}, {{ type = "dense", units = 3, activation = "softmax" }}]
[train]
loss = "sparse_categorical_crossentropy"
optimizer = {{ type = "adam", learning_rate = 0.01 }}
metrics = ["accuracy"]
epochs = {epochs}
batch_size = 16
checkpoint_every_steps = {every}
loggers = ["csv", {{ type = "tensorboard", update_freq = 5 }}, {{ type = "mlflow", tracking_uri = "{uri}" }}]
"""


@pytest.fixture(autouse=True)
def _mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking URI from the machine running the tests; whatever the loggers set is undone afterwards."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in an event folder, by tag, as TensorBoard reads it (duplicates included)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not folder.is_dir():  # not written yet
        return {}
    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    reader.Reload()
    return {tag: [(event.step, event.value) for event in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def mlflow_run(uri: str, experiment: str = "blobs") -> tuple[Any, Any]:
    """The one MLflow run of an experiment, and the client that read it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def metric_steps(client: Any, run: Any, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def file_store(tmp_path: Path) -> str:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # undone by the fixture; MLflow 3 asks for it
    return (tmp_path / "mlruns").as_uri()


# Keras 3.15.1's CSVLogger on a model with metrics=["accuracy"] and validation data (torch backend), its header
# line as written: "epoch", then the logs' keys sorted by name. (Its epochs count from 0; dlcli's from 1, as in
# history.csv.)
KERAS_CSV_HEADER = "epoch,accuracy,loss,val_accuracy,val_loss"


def test_csv_streams_one_row_per_epoch_in_keras_order(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=3, loggers=["csv", {"type": "csv", "filename": str(tmp_path / "ci" / "log.tsv"),
                                                  "separator": "\t"}]), tmp_path / "run")
    rows = list(csv.reader((tmp_path / "run" / "log.csv").open()))
    assert rows[0] == ["epoch", "accuracy", "learning_rate", "loss", "seconds", "val_accuracy", "val_loss"]
    # Keras' order, with the two columns dlcli's logs add (learning_rate, seconds) in their sorted places
    assert [c for c in rows[0] if c not in ("learning_rate", "seconds")] == KERAS_CSV_HEADER.split(",")
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"]
    assert [float(row[3]) for row in rows[1:]] == [row["loss"] for row in history(tmp_path / "run")]
    assert (tmp_path / "ci" / "log.tsv").read_text().splitlines()[1].startswith("1\t")


def test_tensorboard_writes_keras_layout_read_back_by_tensorboard(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=3, loggers=[{"type": "tensorboard", "update_freq": 5}]), tmp_path / "run")
    rows = history(tmp_path / "run")
    train = scalars(tmp_path / "run" / "tensorboard" / "train")
    validation = scalars(tmp_path / "run" / "tensorboard" / "validation")
    assert set(train) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss", "batch_accuracy"}
    assert set(validation) == {"epoch_loss", "epoch_accuracy"}
    assert train["epoch_loss"] == [(r["epoch"], pytest.approx(r["loss"])) for r in rows]
    assert validation["epoch_accuracy"] == [(r["epoch"], pytest.approx(r["val_accuracy"])) for r in rows]
    assert [step for step, _ in train["batch_loss"]] == list(range(5, 3 * 12 + 1, 5))  # 12 steps an epoch


def test_a_missing_extra_fails_before_the_run_directory_is_written(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if dlcli[tensorboard] were not installed
    data = write_blobs(tmp_path / "blobs.npz")
    with pytest.raises(SpecError, match=r"needs tensorboardX, which is not installed: pip install 'dlcli\[tensorboard\]'"):
        fit(spec_doc(data, loggers=["tensorboard"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


class ExportDuringTraining(Callback):
    """Leaves an exported model in the run directory, as `dlcli export` would (its content does not matter here)."""

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        folder = Path(run.info["run_dir"])
        (folder / "model.onnx").write_bytes(b"exported")
        (folder / "model.vocab.txt").write_text("a\nb\n")


def test_mlflow_logs_params_metrics_and_artifacts_to_a_local_mlruns_by_default(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=2, loggers=["mlflow"]), tmp_path / "run", [ExportDuringTraining()])
    client, run = mlflow_run((tmp_path / "mlruns").as_uri())  # ./mlruns: no URI was given
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags["dlcli.run_id"] == json.loads((tmp_path / "run" / "run.json").read_text())["run_id"]
    assert run.data.params["train.optimizer.learning_rate"] == "0.01"
    assert run.data.params["model.layers.0.units"] == "16" and run.data.params["data.validation_split"] == "0.25"
    rows = history(tmp_path / "run")
    for key in ("loss", "val_loss", "accuracy", "learning_rate"):
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert got == [(r["epoch"], pytest.approx(r[key])) for r in rows], key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "run.json", "spec.json", "summary.json", "history.csv", "onnx"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == \
        {"checkpoints/best.safetensors", "checkpoints/last.safetensors"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "onnx")} == {"onnx/model.onnx",
                                                                                 "onnx/model.vocab.txt"}


def test_mlflow_uses_the_tracking_uri_from_the_environment_and_marks_an_interrupted_run_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = file_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = write_blobs(tmp_path / "blobs.npz")
    with pytest.raises(RunInterruptedError):
        fit(spec_doc(data, epochs=3, loggers=["mlflow"]), tmp_path / "run", [SignalAt(15)])
    client, run = mlflow_run(uri)
    assert run.info.status == "KILLED" and metric_steps(client, run, "loss") == [1]


def test_an_unreachable_tracker_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    doc = spec_doc(data, loggers=[{"type": "mlflow", "tracking_uri": "http://127.0.0.1:9"}])
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        with pytest.raises(SpecError, match="mlflow logger: cannot log to http://127.0.0.1:9"):
            fit(doc, tmp_path / "run")
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def _spec_file(folder: Path, uri: str, epochs: int = 3, every: int = 7) -> Path:
    write_blobs(folder / "blobs.npz", n=480)
    spec = folder / "blobs.toml"
    spec.write_text(SPEC.format(epochs=epochs, every=every, uri=uri))
    return spec


def _assert_logged_once(run: Path, uri: str, epochs: int, steps: int) -> None:
    """Every epoch, and every 5th step, in each logger exactly once, with the values history.jsonl holds."""
    rows = history(run)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    train = scalars(run / "tensorboard" / "train")
    assert train["epoch_loss"] == sorted(train["epoch_loss"]) == [(r["epoch"], pytest.approx(r["loss"])) for r in rows]
    assert [s for s, _ in scalars(run / "tensorboard" / "validation")["epoch_loss"]] == list(range(1, epochs + 1))
    assert sorted(s for s, _ in train["batch_loss"]) == list(range(5, steps + 1, 5))
    client, found = mlflow_run(uri)
    assert metric_steps(client, found, "val_loss") == list(range(1, epochs + 1))
    assert found.info.status == "FINISHED"
    logged = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["epoch"]) for r in logged] == list(range(1, epochs + 1))
    assert [float(r["loss"]) for r in logged] == [r["loss"] for r in rows]


def test_a_killed_run_resumed_logs_every_epoch_and_step_once(tmp_path: Path) -> None:
    """SIGKILL after the loggers have logged steps that no checkpoint holds: the resume trains them again from the
    checkpoint, and every tracker holds each epoch and step once."""
    from dlcli.checkpoint import load_checkpoint

    uri = file_store(tmp_path)
    spec = _spec_file(tmp_path, uri)  # 23 steps an epoch, checkpoints every 7 steps, batch scalars every 5
    env = faults.env(DLCLI_TEST_PAUSE_STEP="0.1", MLFLOW_ALLOW_FILE_STORE="true")
    job = subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(spec), "--run-dir", str(tmp_path / "run"),
                            "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while 30 not in [s for s, _ in scalars(tmp_path / "run" / "tensorboard" / "train").get("batch_loss", [])]:
        assert time.monotonic() < deadline and job.poll() is None, job.stderr.read() if job.stderr else ""
        time.sleep(0.02)
    job.kill()  # at step 30 or just after: the last checkpoint is step 28, epoch 1 is logged and saved
    job.wait(timeout=30)
    _, saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    logged = [s for s, _ in scalars(tmp_path / "run" / "tensorboard" / "train")["batch_loss"]]
    assert max(logged) > saved["step"]  # without the trim, these steps would be logged twice
    resumed = subprocess.run([sys.executable, "-m", "dlcli", "train", str(tmp_path / "run"), "--resume", "--quiet"],
                             env=faults.env(MLFLOW_ALLOW_FILE_STORE="true"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    _assert_logged_once(tmp_path / "run", uri, epochs=3, steps=3 * 23)  # 360 training examples, batches of 16


def test_under_mpi_only_rank_0_logs(tmp_path: Path) -> None:
    uri = file_store(tmp_path)
    spec = _spec_file(tmp_path, uri, epochs=2, every=100)
    result = subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--run-dir", str(tmp_path / "run"),
                             "--quiet", "--workers", "2"], env=faults.env(CI="true", MLFLOW_ALLOW_FILE_STORE="true"),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    for folder in ("train", "validation"):
        assert len(list((tmp_path / "run" / "tensorboard" / folder).glob("events.out.tfevents.*"))) == 1
    _assert_logged_once(tmp_path / "run", uri, epochs=2, steps=2 * 23)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["world_size"] == 2
    # and the run reproduces on 2 ranks, bit for bit
    again = subprocess.run([sys.executable, "-m", "dlcli", "reproduce", str(tmp_path / "run"), "--quiet"],
                           env=faults.env(CI="true", MLFLOW_ALLOW_FILE_STORE="true"), capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0, again.stderr
    assert "bit_identical=true" in again.stdout


def test_dlcli_log_replays_a_run_into_trackers_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401
    from dlcli.cli.main import cli

    monkeypatch.chdir(tmp_path)
    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=2), tmp_path / "run")  # no loggers
    for _ in range(2):  # twice: nothing is logged twice
        result = CliRunner().invoke(cli, ["log", str(tmp_path / "run"), "--to", "tensorboard", "--to", "mlflow"])
        assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"log run_dir={tmp_path / 'run'} to=tensorboard,mlflow epochs=2 step=24 " \
                                    "status=finished"
    rows = history(tmp_path / "run")
    assert scalars(tmp_path / "run" / "tensorboard" / "train")["epoch_loss"] == \
        [(r["epoch"], pytest.approx(r["loss"])) for r in rows]
    client, run = mlflow_run((tmp_path / "mlruns").as_uri())
    assert metric_steps(client, run, "loss") == [1, 2] and run.info.status == "FINISHED"
    unknown = CliRunner().invoke(cli, ["log", str(tmp_path / "run"), "--to", "tensorbord"])
    assert unknown.exit_code == 2 and "did you mean tensorboard?" in unknown.stderr


def test_dlcli_log_refuses_a_run_that_is_being_written(tmp_path: Path) -> None:
    from dlcli.train.replay import replay
    from dlcli.train.rundir import RunDirectory

    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=1), tmp_path / "run")
    directory = RunDirectory.existing(tmp_path / "run")
    try:
        with pytest.raises(SpecError, match="is being written by PID"):
            replay(tmp_path / "run", ("csv",))
    finally:
        directory.close()


def test_parameter_names_mlflow_accepts() -> None:
    assert param_key("model.layers[12].units") == "model.layers.12.units"
    assert param_key("train.callbacks[0].monitor") == "train.callbacks.0.monitor"
    assert param_key("data.options{x}") == "data.options_x_"


def test_resume_may_add_a_logger_which_logs_the_epochs_before_it(tmp_path: Path) -> None:
    from dlcli.train.resume import resume_run

    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=2), tmp_path / "run")
    resume_run(tmp_path / "run", ("train.epochs=3", 'train.loggers=["tensorboard"]'), None, [])
    steps = [s for s, _ in scalars(tmp_path / "run" / "tensorboard" / "train")["epoch_loss"]]
    assert sorted(steps) == [1, 2, 3]


class Position:
    """What a logger reads of a run when it starts: where the run stands."""

    def __init__(self, run_dir: Path, epochs: int, step: int) -> None:
        self.info = {"run_dir": str(run_dir), "run": "blobs"}
        self.history = [{"epoch": e, "loss": 1.0 / e, "val_loss": 2.0 / e} for e in range(1, epochs + 1)]
        self.step, self.run_id = step, "r"


def test_tensorboard_trims_events_past_the_run_and_a_record_cut_short(tmp_path: Path) -> None:
    from dlcli.train.callbacks.tensorboard_logger import TensorBoardLogger, TensorBoardLoggerSpec

    spec = TensorBoardLoggerSpec(type="tensorboard", update_freq=4)
    first = TensorBoardLogger(spec)
    first.on_train_begin(Position(tmp_path, 0, 0), {})  # type: ignore[arg-type]
    for epoch in (1, 2, 3):
        for step in range(4 * epoch - 3, 4 * epoch + 1):
            first.on_batch_end(Position(tmp_path, 0, step), epoch, step, {"loss": 0.5})  # type: ignore[arg-type]
        first.on_epoch_end(Position(tmp_path, 0, 4 * epoch), epoch, {"loss": 1.0 / epoch, "val_loss": 2.0 / epoch})  # type: ignore[arg-type]
    first.on_train_abort(Position(tmp_path, 0, 12), "failed")  # type: ignore[arg-type]
    (train_file,) = (tmp_path / "tensorboard" / "train").glob("events.out.tfevents.*")
    with open(train_file, "ab") as stream:
        stream.write(b"\x05\x00\x00")  # a kill in the middle of a record
    # the run resumes from epoch 2, step 9 (mid-epoch 3): later events go, earlier ones stay
    TensorBoardLogger(spec).on_train_begin(Position(tmp_path, 2, 9), {})  # type: ignore[arg-type]
    train = scalars(tmp_path / "tensorboard" / "train")
    assert [s for s, _ in train["epoch_loss"]] == [1, 2] and [s for s, _ in train["batch_loss"]] == [4, 8]
    assert [s for s, _ in scalars(tmp_path / "tensorboard" / "validation")["epoch_loss"]] == [1, 2]
    assert not train_file.read_bytes().endswith(b"\x05\x00\x00")


def test_a_file_store_the_user_names_follows_mlflows_own_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE is set; dlcli sets it only for its own
    default (./mlruns), and says MLflow's words, before the run starts, for a URI the user gave."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
    data = write_blobs(tmp_path / "blobs.npz")
    with pytest.raises(SpecError, match="cannot use the tracking store file://.*MLFLOW_ALLOW_FILE_STORE=true"):
        fit(spec_doc(data, loggers=["mlflow"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_dlcli_log_to_csv_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dlcli.cli import commands  # noqa: F401
    from dlcli.cli.main import cli

    data = write_blobs(tmp_path / "blobs.npz")
    fit(spec_doc(data, epochs=1), tmp_path / "run")
    (tmp_path / "run" / "log.csv").mkdir()  # stands in for a read-only run directory (tests may run as root)
    result = CliRunner().invoke(cli, ["log", str(tmp_path / "run"), "--to", "csv"])
    assert result.exit_code == 2, result.output  # an output that cannot be written, as for an export
    assert result.stderr.startswith(f"error: cannot write {tmp_path / 'run' / 'log.csv'}: Is a directory; ")
