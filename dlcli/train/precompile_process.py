"""The child process of train/precompile.py: compiles a run's backward passes, from the last layer back.

`python -m dlcli.train.precompile_process` reads the run's spec (JSON, one line) on stdin and compiles, into the
shared NUMBA_CACHE_DIR, each layer's backward from the last layer back to the first, on zeros of its input
(train/zero_steps.py), then the optimizer's update and the loss and metrics. A layer's forward runs first, as
the backward needs what it keeps, but without the recurrent time loops (ops/recurrent.py
forward_loops_skipped): those the run's thread compiles meanwhile, taking the loss and the layers' forwards
from the first on (train/precompile.py says why that is safe and what it gains). A layer whose kernel the
thread is compiling is left to the thread, and the child goes on to the next; a kernel that one of the child's
own needs (a helper both call) is waited for and loaded. The child never touches the run's files or random
streams, prints nothing, and exits when done or as soon as its stdin closes: the parent holds that pipe, so the
child goes when the parent stops it or dies, however it dies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np

from dlcli.graph import build_model
from dlcli.kernels.cache import share_compiles_between_processes
from dlcli.ops.recurrent import forward_loops_skipped
from dlcli.spec.models import RunSpec
from dlcli.train.precompile import spec_from_json
from dlcli.train.zero_steps import layer_step, loss_step, optimizer_step


def compile_from_the_end(spec: RunSpec) -> None:
    """Every layer's backward from the last to the first, then the optimizer and the loss and metrics (the thread
    begins with those: whichever process comes to them second loads them)."""
    model = build_model(spec.model, np.random.default_rng(1), spec)
    steps = [*(lambda node=node: layer_step(model, node) for node in reversed(model.nodes)),
             lambda: optimizer_step(model, spec), lambda: loss_step(model)]
    with forward_loops_skipped():
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - what zeros cannot compile, the run compiles
                continue


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()  # returns at end of file: the parent closed the pipe or is gone
    os._exit(0)


def main() -> None:
    """Read the spec, watch stdin for the parent's going, compile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the parent handles it
    spec = spec_from_json(sys.stdin.buffer.readline())
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    # a kernel the run's thread is compiling: go on to the next layer rather than wait for it
    share_compiles_between_processes(wait=False)
    try:
        with np.errstate(all="ignore"):  # zeros may divide by zero; nobody reads these numbers
            compile_from_the_end(spec)
    finally:
        os._exit(0)  # nothing to flush or clean: the cache files are written whole or not at all


if __name__ == "__main__":
    main()
