"""model_checkpoint: a numbered checkpoint every N epochs, beside the best and last ones every run keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from dlcli import registry
from dlcli.train.callbacks.base import Callback, CallbackSpec, Run

PREFIX = "epoch_"


class ModelCheckpointSpec(CallbackSpec):
    """[[train.callbacks]] type = "model_checkpoint"."""

    type: Literal["model_checkpoint"] = "model_checkpoint"
    every_epochs: int | None = Field(None, gt=0, description="Write checkpoints/epoch_NNNN every N epochs.")
    keep_last: int | None = Field(None, gt=0, description="Keep only the newest K numbered checkpoints.")

    @model_validator(mode="after")
    def _needs_a_period(self) -> ModelCheckpointSpec:
        if self.every_epochs is None:
            raise ValueError("give every_epochs = N")
        return self


@registry.callbacks.register("model_checkpoint", spec=ModelCheckpointSpec)
class ModelCheckpoint(Callback):
    """Keep a numbered checkpoint every N epochs (best and last are always kept)."""

    def __init__(self, spec: ModelCheckpointSpec) -> None:
        self.spec = spec
        self.requested: str | None = None

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Ask for checkpoints/epoch_NNNN on every N-th epoch (written after the epoch's best and last)."""
        if epoch % self.spec.every_epochs == 0:  # type: ignore[operator]
            self.requested = f"{PREFIX}{epoch:04d}"
            run.save_checkpoint(self.requested, "periodic")

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        """Once our numbered checkpoint is written, remove all but the newest keep_last of them."""
        if Path(path).stem != self.requested or self.spec.keep_last is None:
            return
        numbered = [name for name in run.checkpoint_names() if name.startswith(PREFIX)]
        for old in numbered[:-self.spec.keep_last]:
            run.remove_checkpoint(old)
