"""A stand-in for the run a callback is handed: one weight and a learning rate, no model and no training."""

from __future__ import annotations

from typing import Literal

import numpy as np

from dlcli.train.callbacks.monitor import monitor_mode


class StubRun:
    """Implements the Run protocol's reads and actions that the built-in callbacks use.

    Its one weight holds whatever the test sets (the epoch number), so the weights a callback restores name
    the epoch they came from.
    """

    def __init__(self, learning_rate: float = 1.0) -> None:
        self.kernel = np.zeros(1, np.float32)
        self.base_rate, self.lr_scale = learning_rate, 1.0
        self.stop_reason: str | None = None
        self.epoch = self.step = self.rank = 0
        self.info: dict[str, object] = {}
        self.saved: list[tuple[str, str]] = []

    @property
    def learning_rate(self) -> float:
        return self.base_rate * self.lr_scale

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def weights(self) -> dict[str, np.ndarray]:
        return {"param/dense/kernel": self.kernel}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for name, value in weights.items():
            self.weights()[name][...] = value

    def direction(self, name: str) -> Literal["min", "max"]:
        return monitor_mode(name, "auto")

    def save_checkpoint(self, name: str, kind: str = "periodic") -> None:
        self.saved.append((name, kind))

    def checkpoint_names(self) -> list[str]:
        return []

    def remove_checkpoint(self, name: str) -> None:
        pass
