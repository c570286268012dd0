"""Faults the subprocess tests inject into `dlcli train`, through its test seam (dlcli/train/callbacks/injected.py).

`env(**faults)` is the environment for such a process: DLCLI_TEST_CALLBACKS names this module, so every training
run in it adds the callbacks `callbacks()` returns, and the faults asked for are set:
  DLCLI_TEST_PAUSE_STEP=SECONDS     sleep after every step, so that a signal or a kill lands where a test wants
  DLCLI_TEST_FAULT=RANK:STEP:KIND   on that MPI rank, after that global step: "raise" an error, "hang" for an
                                    hour (the MPI watchdog must end the job), or "perturb" one weight (the ranks'
                                    weight-hash comparison must catch the drift)
  DLCLI_TEST_PAUSE_WRITE=SECONDS    hold every atomic file write half written that long (a kill lands mid-file)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dlcli import checkpoint
from dlcli.train.callbacks import Callback, Run
from dlcli.train.callbacks.injected import SEAM

REPO = Path(__file__).resolve().parents[2]


def env(**faults: str) -> dict[str, str]:
    """os.environ plus these faults and the seam that installs them (the repository on PYTHONPATH, so that
    `tests` imports from any working directory)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, SEAM: __name__, "PYTHONPATH": path, **faults}


class PauseEachStep(Callback):
    """Sleeps after every step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        time.sleep(self.seconds)


class BreakRank(Callback):
    """On one rank, after one global step: raise, hang, or nudge the first weight."""

    def __init__(self, fault: str) -> None:
        rank, step, self.kind = fault.split(":")
        self.rank, self.step = int(rank), int(step)

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        if run.rank != self.rank or run.step != self.step:
            return
        if self.kind == "raise":
            raise RuntimeError(f"injected fault on rank {run.rank} at step {run.step}")
        if self.kind == "hang":
            time.sleep(3600)
        if self.kind == "perturb":  # a replica drifts: the periodic weight-hash comparison must catch it
            first = next(array for name, array in run.weights().items() if name.startswith("param/"))
            first.reshape(-1)[0] += 1e-3


def _hold(seconds: float) -> Any:
    def hold(temporary: Path) -> None:
        time.sleep(seconds)

    return hold


def callbacks() -> list[Callback]:
    """The faults the environment asks for (the seam calls this once per training run)."""
    found: list[Callback] = []
    if float(os.environ.get("DLCLI_TEST_PAUSE_STEP") or 0) > 0:
        found.append(PauseEachStep(float(os.environ["DLCLI_TEST_PAUSE_STEP"])))
    if os.environ.get("DLCLI_TEST_FAULT"):
        found.append(BreakRank(os.environ["DLCLI_TEST_FAULT"]))
    if float(os.environ.get("DLCLI_TEST_PAUSE_WRITE") or 0) > 0:
        checkpoint.half_written_hook = _hold(float(os.environ["DLCLI_TEST_PAUSE_WRITE"]))
    return found
