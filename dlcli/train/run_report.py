"""What a run reports about itself: at its start (on_train_begin's info: the start line and event) and at its
end (summary.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcli.graph import Model
from dlcli.spec.models import RunSpec
from dlcli.train.callbacks.monitor import Watch
from dlcli.train.datasets import Splits
from dlcli.train.distributed import World
from dlcli.train.rundir import RunDirectory, checkpoint_path


def start_info(spec: RunSpec, model: Model, splits: Splits, steps_per_epoch: int, directory: RunDirectory,
               world: World, init_report: dict[str, Any] | None) -> dict[str, Any]:
    """What on_train_begin reports (the start line and event): the run, its data and its model's size."""
    trainable, frozen = model.parameter_counts()
    info = {"run": spec.name, "run_dir": str(directory.path), "epochs": spec.train.epochs,
            "steps_per_epoch": steps_per_epoch, "batch_size": spec.train.batch_size,
            "samples": len(splits.train), "validation_samples": len(splits.validation) if splits.validation else 0,
            "seed": spec.seed, "params": trainable + frozen, "trainable_params": trainable,
            "non_trainable_params": frozen,
            "resumed_from": None, "world_size": world.size}
    if directory.replaced is not None:
        info["replaced"] = str(directory.replaced)
    files = splits.schema.get("files")
    if files:  # an image or text folder: how many files the check before training left out, and its time
        info["skipped_files"] = files["skipped"]
        if "check_seconds" in files:
            info["file_check_seconds"] = files["check_seconds"]
    if init_report is not None:  # every weight that loaded, was missing or was unexpected
        info["init_from"] = init_report
    missing = splits.schema.get("missing")
    if missing and missing.get("policy") not in (None, "error"):  # what the missing-value policy did
        info["missing"] = {k: missing[k] for k in ("policy", "rows_dropped", "cells_filled") if k in missing}
    if splits.class_weights:  # what train.class_weight weighs each class by ("balanced": computed)
        info["class_weight"] = {output: {str(label): weight for label, weight in sorted(table.items())}
                                for output, table in splits.class_weights.items()}
    return info


def run_summary(spec: RunSpec, run_dir: Path, history: list[dict[str, Any]], best: Watch, stop_reason: str | None,
                seconds: float, info: dict[str, Any]) -> dict[str, Any]:
    """summary.json: the epochs run, the final and best values, and the time they took."""
    final = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds", "learning_rate")} if history else {}
    epoch_times = [row["seconds"] for row in history]
    # no epoch was ever best (the monitored value NaN every epoch): checkpoints/best was never written
    written = str(checkpoint_path(run_dir, "best")) if best.best_epoch else None
    summary = {"run": spec.name, "run_dir": str(run_dir), "epochs_run": len(history),
               "stopped_early": stop_reason is not None, "final": final,
               "best": {**best.state(), "checkpoint": written},
               "seconds": seconds, "seconds_per_epoch": epoch_times, "samples": info["samples"],
               "params": info["params"]}
    if stop_reason is not None:
        summary["stop_reason"] = stop_reason
    return summary
