"""Specs of the callbacks a [[train.callbacks]] table can name; train/ implements them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dlcli import registry
from dlcli.registry import StrictSpec

Mode = Literal["auto", "min", "max"]


class CallbackSpec(StrictSpec):
    """Keys every callback takes."""

    type: str


@registry.callbacks.register("early_stopping")
class EarlyStoppingSpec(CallbackSpec):
    """Stop when a monitored value has not improved for `patience` epochs (Keras EarlyStopping)."""

    type: Literal["early_stopping"] = "early_stopping"
    monitor: str = Field("val_loss", description="The reported value to watch, e.g. val_loss or val_accuracy.")
    mode: Mode = Field("auto", description="Whether lower (min) or higher (max) is better; auto: max for accuracies, "
                                           "AUC, precision and recall.")
    patience: int = Field(0, ge=0, description="Epochs without improvement before training stops.")
    min_delta: float = Field(0.0, ge=0, description="The smallest change that counts as an improvement.")
    restore_best_weights: bool = Field(False, description="On stopping, go back to the weights of the best epoch.")


@registry.callbacks.register("reduce_lr_on_plateau")
class ReduceLROnPlateauSpec(CallbackSpec):
    """Multiply the learning rate by `factor` when a monitored value stalls (Keras ReduceLROnPlateau)."""

    type: Literal["reduce_lr_on_plateau"] = "reduce_lr_on_plateau"
    monitor: str = Field("val_loss", description="The reported value to watch, e.g. val_loss.")
    mode: Mode = Field("auto", description="Whether lower (min) or higher (max) is better; auto: max for accuracies, "
                                           "AUC, precision and recall.")
    factor: float = Field(0.1, gt=0, lt=1, description="Multiplies the learning rate at each reduction.")
    patience: int = Field(10, ge=0, description="Epochs without improvement before the rate is lowered.")
    min_delta: float = Field(1e-4, ge=0, description="The smallest change that counts as an improvement.")
    cooldown: int = Field(0, ge=0, description="Epochs after a reduction during which no stall is counted.")
    min_lr: float = Field(0.0, ge=0, description="The rate is never lowered below this.")


@registry.callbacks.register("model_checkpoint")
class ModelCheckpointSpec(CallbackSpec):
    """Keep a numbered checkpoint every N epochs (best and last are always kept)."""

    type: Literal["model_checkpoint"] = "model_checkpoint"
    every_epochs: int | None = Field(None, gt=0, description="Write checkpoints/epoch_NNNN every N epochs.")
    keep_last: int | None = Field(None, gt=0, description="Keep only the newest K numbered checkpoints.")

    @model_validator(mode="after")
    def _needs_a_period(self) -> ModelCheckpointSpec:
        if self.every_epochs is None:
            raise ValueError("give every_epochs = N")
        return self
