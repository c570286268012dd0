"""A scripted two-epoch training run, replayed into any Callback, shared by the report tests."""

from __future__ import annotations

from typing import Any

from dlcli.train.callbacks import Callback

INFO: dict[str, Any] = {"run": "mnist-mlp", "run_dir": "runs/mnist-mlp", "epochs": 2, "steps_per_epoch": 3,
                        "batch_size": 128, "samples": 384, "seed": 1337, "params": 407050,
                        "resumed_from": None}
EPOCH_LOGS: list[dict[str, float]] = [
    {"loss": 0.25632, "accuracy": 0.92512, "val_loss": 0.129, "val_accuracy": 0.961,
     "learning_rate": 0.001, "seconds": 1.8234},
    {"loss": 0.10455, "accuracy": 0.96871, "val_loss": float("nan"), "val_accuracy": 0.97,
     "learning_rate": 1e-05, "seconds": 1.7},
]
SUMMARY: dict[str, Any] = {"epochs_run": 2, "loss": 0.10455, "accuracy": 0.96871, "val_loss": float("nan"),
                           "val_accuracy": 0.97, "seconds": 3.5234, "stopped_early": False,
                           "run_dir": "runs/mnist-mlp"}


def replay(callback: Callback) -> None:
    """Drive callback through start, two epochs of three steps with checkpoints, and end. The run handle is None:
    a reporter prints and never acts on the run."""
    callback.on_train_begin(None, INFO)
    for epoch, logs in enumerate(EPOCH_LOGS, start=1):
        callback.on_epoch_begin(None, epoch, 3)
        for step in range(1, 4):
            callback.on_batch_end(None, epoch, step, {"loss": 0.5 / step, "accuracy": 0.8 + step / 100})
        callback.on_epoch_end(None, epoch, logs)
        callback.on_checkpoint(None, "runs/mnist-mlp/checkpoints/last.safetensors", "last")
        if epoch == 1:
            callback.on_checkpoint(None, "runs/mnist-mlp/checkpoints/best.safetensors", "best")
    callback.on_train_end(None, SUMMARY)
