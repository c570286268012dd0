"""Inverted dropout: zero a fraction of values and scale the rest, so inference needs no rescaling."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor


class Dropout(Op):
    """a * mask / (1 - rate), the mask drawn from the run's seeded generator (keep with probability 1 - rate)."""

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        self.rate, self.rng = rate, rng

    def forward(self, a: Array) -> Array:
        keep = self.rng.random(a.shape, dtype=np.float32) >= self.rate
        self.mask = keep * np.asarray(1.0 / (1.0 - self.rate), a.dtype)
        return a * self.mask

    def backward(self, d_out: Array) -> tuple[Array]:
        return (d_out * self.mask,)


def dropout(a: Tensor, rate: float, rng: np.random.Generator) -> Tensor:
    """Inverted dropout with a mask from `rng`; rate 0 returns a unchanged."""
    return a if rate <= 0 else Dropout.apply(a, rate=rate, rng=rng)
