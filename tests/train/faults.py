"""Faults the subprocess tests inject into `dlcli train`, through its test seam (dlcli/train/callbacks/injected.py).

`env(**faults)` is the environment for such a process: DLCLI_TEST_CALLBACKS names this module, so every training
run in it adds the callbacks `callbacks()` returns, and the faults asked for are set:
  DLCLI_TEST_PAUSE_STEP=SECONDS     sleep after every step, so that a signal or a kill lands where a test wants
  DLCLI_TEST_FAULT=RANK:STEP:KIND   on that MPI rank, after that global step: "raise" an error (a bug), "data"
                                    a DataError (exit 3), "hang" for an hour (the MPI watchdog must end the job), or "perturb" one weight (the ranks'
                                    weight-hash comparison must catch the drift)
  DLCLI_TEST_PAUSE_WRITE=SECONDS    hold every atomic file write half written that long (a kill lands mid-file)
  DLCLI_TEST_RECORD_DECODED=FOLDER  at the end, write FOLDER/rank-R.json: the rows of every in-RAM image cache
                                    (data.cache = "memory") this rank decoded, to see which images each rank read
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from dlcli import checkpoint
from dlcli.errors import DataError
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
        if self.kind == "data":  # a user error that only this rank meets (a file only its shard reads)
            raise DataError(f"injected data error on rank {run.rank} at step {run.step}")
        if self.kind == "hang":
            time.sleep(3600)
        if self.kind == "perturb":  # a replica drifts: the periodic weight-hash comparison must catch it
            first = next(array for name, array in run.weights().items() if name.startswith("param/"))
            first.reshape(-1)[0] += 1e-3


def _hold(seconds: float) -> Any:
    def hold(temporary: Path) -> None:
        time.sleep(seconds)

    return hold


class RecordDecoded(Callback):
    """At the end of training, writes which rows this rank's in-RAM image caches hold (the images it decoded)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        from dlcli.data.image_cache import ImageStore

        stores = [found for found in gc.get_objects() if type(found) is ImageStore]
        rows = sorted(int(row) for store in stores for row in store.filled.nonzero()[0])
        (self.folder / f"rank-{run.rank}.json").write_text(json.dumps(rows))


def callbacks() -> list[Callback]:
    """The faults the environment asks for (the seam calls this once per training run)."""
    found: list[Callback] = []
    if float(os.environ.get("DLCLI_TEST_PAUSE_STEP") or 0) > 0:
        found.append(PauseEachStep(float(os.environ["DLCLI_TEST_PAUSE_STEP"])))
    if os.environ.get("DLCLI_TEST_FAULT"):
        found.append(BreakRank(os.environ["DLCLI_TEST_FAULT"]))
    if os.environ.get("DLCLI_TEST_RECORD_DECODED"):
        found.append(RecordDecoded(os.environ["DLCLI_TEST_RECORD_DECODED"]))
    if float(os.environ.get("DLCLI_TEST_PAUSE_WRITE") or 0) > 0:
        checkpoint.half_written_hook = _hold(float(os.environ["DLCLI_TEST_PAUSE_WRITE"]))
    return found
