"""After a non-finite loss: checkpoints/last rolled back to a state whose loss was finite.

The loss is checked before each update, so the state saved after step k is only known good once step k + 1's
loss is finite. When the loss broke right after `last` was written, that state is the broken one: `previous`,
whose next loss was finite, takes its place (the history files follow it).
"""

from __future__ import annotations

import os
from pathlib import Path

from dlcli.checkpoint import load_checkpoint
from dlcli.train.rundir import checkpoint_path, write_history


def keep_last_good_state(run_dir: Path, last_saved_at: int | None, step: int) -> str:
    """After a non-finite loss at `step`: what the run keeps as its last good state (`last_saved_at`: the step
    checkpoints/last was written after, None before the first), rolling `last` back when it is the broken
    state; returns the sentence that says so, for the error message."""
    if last_saved_at is None:
        return ". No checkpoint was written: the run diverged before its first one, so there is no good state to go " \
               "back to"
    if last_saved_at != step:  # a finite loss was computed from it since: a good state
        return f". {checkpoint_path(run_dir, 'last')} (step {last_saved_at}) is the last good state"
    return roll_back_last(run_dir, step)


def roll_back_last(run_dir: Path, step: int) -> str:
    """checkpoints/last was written after `step`, whose loss was not finite: `previous` (whose next loss was
    finite) takes its place, or with none, `last` goes; the history file follows. Returns what was done, for
    the error message."""
    last, previous = checkpoint_path(run_dir, "last"), checkpoint_path(run_dir, "previous")
    if previous.is_file():
        os.replace(previous, last)
        _, metadata = load_checkpoint(last)
        write_history(run_dir, list(metadata.get("history", [])))
        where = f"epoch {metadata.get('epoch')}" + (f", step {metadata.get('step')}" if metadata.get("in_epoch")
                                                    else "")
        return (f". {last} was rolled back to its previous state ({where}): the state saved after step "
                f"{step} is the one that gave this loss")
    last.unlink(missing_ok=True)
    write_history(run_dir, [])
    return (f". {last} was removed: the only state it held is the one that gave this loss, and no earlier state "
            "was saved")
