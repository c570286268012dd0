"""The child process of train/precompile.py: compiles a run's backward passes, from the last layer back.

The run forks it (train/precompile.py), so it starts with dlcli, NumPy and Numba already imported and the spec
in memory: no interpreter to start and nothing to import again (half a second of CPU a new `python` took). It
compiles, into the shared NUMBA_CACHE_DIR, each layer's backward from the last layer back to the first, on zeros
of its input (train/zero_steps.py), then the optimizer's update and the loss and metrics. A layer's forward runs
first, as the backward needs what it keeps, but without the recurrent time loops (ops/recurrent.py
forward_loops_skipped): those the run's thread compiles meanwhile, taking the loss and the layers' forwards
from the first on (train/precompile.py says why that is safe and what it gains). A layer whose kernel the
thread is compiling is left for later, and the child goes on to the next; at the end it comes back to the
layers it left, waiting for the thread's kernel this time; a kernel that one of the child's own needs (a
helper both call) is waited for and loaded. The child never touches the run's files or random
streams (it closes every file it inherited, the run directory's lock among them), prints nothing, and exits
when done or as soon as the pipe it watches closes: the run holds that pipe's other end, so the child goes when
the run stops it or dies, however it dies.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, NoReturn

import numpy as np

from dlcli.graph import build_model
from dlcli.kernels.cache import ClaimedElsewhereError, share_compiles_between_processes
from dlcli.ops.recurrent import forward_loops_skipped
from dlcli.spec.models import RunSpec
from dlcli.train.zero_steps import layer_step, loss_step, optimizer_step


def compile_from_the_end(spec: RunSpec) -> None:
    """Every layer's backward from the last to the first, then the optimizer and the loss and metrics (the thread
    begins with those: whichever process comes to them second loads them); then, once more, the layers it left
    because the thread was compiling one of their kernels, this time waiting for that kernel.

    The second pass is the balance of the two: a layer is left at its forward, which the thread compiles first,
    so its backward was lost to the child and the thread's whole step compiled it at the end, while the child
    had nothing left to do (mnist_sequences_ctc: the second conv's activation_grad_and_bias_sum, 0.14 s, came
    after the thread's last forward; benchmarks/compile_time.py --timeline). By the time the child is back, the
    thread has mostly compiled that forward, and the child loads it and compiles the backward meanwhile."""
    model = build_model(spec.model, np.random.default_rng(1), spec)
    steps = [*(lambda node=node: layer_step(model, node) for node in reversed(model.nodes)),
             lambda: optimizer_step(model, spec), lambda: loss_step(model)]
    left: list[Callable[[], bool | None]] = []
    with forward_loops_skipped():
        for step in steps:
            try:
                if step() is False:  # a layer's forward failed: a claimed kernel, or zeros it cannot take
                    left.append(step)
            except ClaimedElsewhereError:  # its backward met a claimed kernel
                left.append(step)
            except Exception:  # noqa: BLE001 - what zeros cannot compile, the run compiles
                continue
        if left:
            share_compiles_between_processes(wait=True)  # nothing else to do: wait for the thread's kernel
        for step in left:
            try:
                step()
            except Exception:  # noqa: BLE001 - as above
                continue


def run_child(spec: RunSpec, stop_fd: int) -> NoReturn:
    """The forked child's whole life: compile, exit; exit at once when stop_fd (a pipe's read end) closes."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the run handles it
        _drop_inherited_files(stop_fd)
        threading.Thread(target=_exit_when_closed, args=(stop_fd,), daemon=True).start()
        # a kernel the run's thread is compiling: go on to the next layer rather than wait for it
        share_compiles_between_processes(wait=False)
        with np.errstate(all="ignore"):  # zeros may divide by zero; nobody reads these numbers
            compile_from_the_end(spec)
    finally:
        os._exit(0)  # nothing to flush or clean: the cache files are written whole or not at all


def _drop_inherited_files(keep: int) -> None:
    """Close every file descriptor the run had open but `keep` (the run directory's lock: held by a child too, it
    would outlive a run killed outright) and point stdout and stderr at /dev/null (Numba's warnings)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.closerange(3, keep)
    os.closerange(keep + 1, max(keep + 1, os.sysconf("SC_OPEN_MAX")))


def _exit_when_closed(fd: int) -> None:
    while os.read(fd, 4096):  # returns b"" at end of file: the run closed the pipe or is gone
        pass
    os._exit(0)
