"""The random streams of a run: one generator per purpose, all derived from the spec's seed."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.train.run_checkpoints import rng_state


class Streams:
    """The run's random generators, one per purpose, all derived from the spec's seed."""

    def __init__(self, seed: int) -> None:
        model, split, shuffle = np.random.SeedSequence(seed).spawn(3)
        self.model = np.random.default_rng(model)  # weight init, then dropout masks
        self.split = np.random.default_rng(split)  # the validation hold-out
        self.shuffle = np.random.default_rng(shuffle)  # each epoch's order

    def state(self) -> dict[str, Any]:
        """States to save with a checkpoint."""
        return {"model": rng_state(self.model), "shuffle": rng_state(self.shuffle)}


def give_rank_its_stream(seed: int, rank: int, stream: np.random.Generator) -> None:
    """Rank 0 keeps the model stream (so one rank is exactly a single-process run); every other rank gets its
    own, so that the ranks' dropout masks differ. In place: the layers hold this generator."""
    if rank:
        stream.bit_generator.state = np.random.default_rng(np.random.SeedSequence([seed, rank])).bit_generator.state
