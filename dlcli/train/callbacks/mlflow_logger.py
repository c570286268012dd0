"""mlflow logger: the run in an MLflow tracking store, through mlflow-skinny (the optional extra dlcli[mlflow]).

Where: the logger's tracking_uri, else $MLFLOW_TRACKING_URI, else a local ./mlruns folder (MLflow's file store,
which MLflow 3 keeps in maintenance mode: dlcli opts in to it for this default only). The experiment is the
spec's name; the MLflow run is tagged with the dlcli run's run_id, so every session of a resumed run, and `dlcli
log`, continue the same MLflow run. Parameters are the resolved spec as key paths ("[1]" written ".1": MLflow
allows no brackets), metrics every epoch at step = the epoch (from 1), and at the end the run directory's
checkpoints, manifest, spec, summary and history, and any exported .onnx file, as artifacts.

Each session first logs the epochs of the run's history that MLflow does not have, and never logs an (epoch,
metric) it already has: every epoch is there once, whatever stopped the run. A failure to reach MLflow when
the run starts stops it (the configuration is wrong); later failures print a warning and training goes on
(`dlcli log RUN --to mlflow` fills the gap afterwards).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from dlcli import registry
from dlcli.errors import SpecError
from dlcli.train.callbacks.base import Callback, CallbackSpec, Run

INSTALL = "pip install 'dlcli[mlflow]'"
RUN_ID_TAG = "dlcli.run_id"
NOT_LOGGED = ("epoch",)
RUN_FILES = ("run.json", "spec.json", "summary.json", "history.csv")
STATUS = {"interrupted": "KILLED", "killed": "KILLED", "diverged": "FAILED", "failed": "FAILED"}
_BATCH = 100  # MLflow takes at most 100 parameters or tags per log_batch call
_PARAM_LENGTH = 6000


class MlflowLoggerSpec(CallbackSpec):
    """[train] loggers = ["mlflow"] or [{ type = "mlflow", experiment = "...", tracking_uri = "..." }]."""

    type: Literal["mlflow"] = "mlflow"
    tracking_uri: str | None = Field(None, description="Where MLflow stores runs; default $MLFLOW_TRACKING_URI, "
                                                       "else ./mlruns.")
    experiment: str | None = Field(None, min_length=1, description="The MLflow experiment; default the spec's "
                                                                   "name.")
    artifacts: bool = Field(True, description="At the end, log the checkpoints, the run's files and any exported "
                                              ".onnx file as artifacts.")


def tracking_uri(spec: MlflowLoggerSpec) -> str:
    """The logger's tracking_uri, else $MLFLOW_TRACKING_URI, else ./mlruns (whose file store MLflow 3 allows only
    when asked to: dlcli asks, for this default)."""
    if spec.tracking_uri:
        return spec.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path("mlruns").resolve().as_uri()


def param_key(key: str) -> str:
    """A spec key path as an MLflow parameter or metric name: brackets and other characters it refuses
    become '.' and '_' (model.layers[1].units -> model.layers.1.units)."""
    return re.sub(r"[^\w\-./ :]", "_", re.sub(r"\[(\d+)\]", r".\1", key))


@registry.loggers.register("mlflow", spec=MlflowLoggerSpec)
class MlflowLogger(Callback):
    """Log the spec, every epoch's values and the run's files to MLflow (./mlruns unless told otherwise)."""

    def __init__(self, spec: MlflowLoggerSpec) -> None:
        self.spec = spec
        try:
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SpecError(f"the mlflow logger needs mlflow-skinny, which is not installed: {INSTALL}") from None
        self.Metric, self.Param, self.RunTag, self.failure = Metric, Param, RunTag, MlflowException
        self.uri = tracking_uri(spec)
        try:  # MLflow opens the store here: an unknown scheme or a refused store fails before the run starts
            self.client = MlflowClient(tracking_uri=self.uri)
        except (MlflowException, ImportError) as err:
            raise SpecError(f"mlflow logger: cannot use the tracking store {self.uri}: {_first_line(err)}") from None
        self.run_id: str | None = None
        self.logged: dict[str, set[int]] = {}  # steps MLflow already has, by metric

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Find (by the dlcli run_id) or create the MLflow run, log the spec, and the epochs it misses."""
        try:
            self._open(run, info)
            for row in run.history:
                self._log_epoch(int(row["epoch"]), row)
        except self.failure as err:
            raise SpecError(f"mlflow logger: cannot log to {self.uri}: {_first_line(err)}; check the logger's "
                            "tracking_uri or MLFLOW_TRACKING_URI") from None

    def _open(self, run: Run, info: dict[str, Any]) -> None:
        name = self.spec.experiment or str(info.get("run") or "dlcli")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}'",
                                        max_results=1) if run.run_id else []
        params = {param_key(k): _param_value(v) for k, v in run.spec_keys().items() if v is not None}
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            saved = found[0].data.params
            changed = {k: v for k, v in params.items() if k in saved and saved[k] != v}
            params = {k: v for k, v in params.items() if k not in saved}
            tags = {f"dlcli.resumed_with.{k}": v for k, v in changed.items()}  # a parameter cannot change in MLflow
            self.logged = {key: {m.step for m in self.client.get_metric_history(self.run_id, key)}
                           for key in {param_key(k) for row in run.history for k in row if k not in NOT_LOGGED}}
        else:
            run_dir = Path(str(info.get("run_dir", "")))
            identity = {RUN_ID_TAG: run.run_id or "", "dlcli.run_dir": str(run_dir.resolve())}
            created = self.client.create_run(experiment_id, run_name=run_dir.name or None, tags=identity)
            self.run_id, tags, self.logged = created.info.run_id, {}, {}
        items = [self.Param(k, v) for k, v in params.items()]
        tag_items = [self.RunTag(k[:250], v[:5000]) for k, v in tags.items()]
        for start in range(0, max(len(items), len(tag_items)), _BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + _BATCH], tags=tag_items[start:start + _BATCH])

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """The epoch's values, at step = the epoch."""
        try:
            self._log_epoch(epoch, logs)
        except self.failure as err:
            _warn(f"could not log epoch {epoch} ({_first_line(err)}); training goes on, and `dlcli log "
                  f"{run.info.get('run_dir')} --to mlflow` fills the gap later")

    def _log_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        stamp = int(time.time() * 1000)
        metrics = []
        for name, value in logs.items():
            key = param_key(name)
            if name in NOT_LOGGED or value is None or not math.isfinite(value) or epoch in self.logged.get(key, ()):
                continue
            metrics.append(self.Metric(key, float(value), stamp, epoch))
            self.logged.setdefault(key, set()).add(epoch)
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """The run's files as artifacts (unless artifacts = false), then the MLflow run is FINISHED."""
        try:
            if self.spec.artifacts:
                self._log_artifacts(Path(str(run.info["run_dir"])))
            self.client.set_terminated(self.run_id, status="FINISHED")
        except self.failure as err:
            _warn(f"could not finish the MLflow run ({_first_line(err)}); `dlcli log {run.info.get('run_dir')} "
                  "--to mlflow` tries again")

    def on_train_abort(self, run: Run, status: str) -> None:
        """The MLflow run ends KILLED (interrupted) or FAILED (diverged, failed)."""
        if self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status=STATUS.get(status, "FAILED"))
        except self.failure as err:
            _warn(f"could not mark the MLflow run {STATUS.get(status, 'FAILED')} ({_first_line(err)})")

    def _log_artifacts(self, run_dir: Path) -> None:
        for path in sorted((run_dir / "checkpoints").glob("*.safetensors")):
            if not path.name.startswith(".") and path.stem != "previous":  # previous: last's fallback, not a result
                self.client.log_artifact(self.run_id, str(path), "checkpoints")
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        for path in exported_models(run_dir):
            self.client.log_artifact(self.run_id, str(path), "onnx")


def exported_models(run_dir: Path) -> list[Path]:
    """ONNX files `dlcli export` left in the run directory, with the files beside each that share its name (a
    vocabulary written for a text model: model.vocab.txt beside model.onnx)."""
    found: list[Path] = []
    for model in sorted(run_dir.rglob("*.onnx")):
        if "checkpoints" in model.relative_to(run_dir).parts or model.name.startswith("."):
            continue
        found += [model, *sorted(p for p in model.parent.glob(f"{model.stem}.*") if p != model and p.is_file()
                                 and p.suffix != ".onnx")]
    return found


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _PARAM_LENGTH else text[:_PARAM_LENGTH - 3] + "..."


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _warn(message: str) -> None:
    print(f"warning: mlflow logger: {message}", file=sys.stderr)
