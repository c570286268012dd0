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

from typing import Any, Callable

import numpy as np

from dlcli.graph import build_model
from dlcli.kernels.cache import ClaimedElsewhereError, prepare_compiler, share_compiles_between_processes
from dlcli.ops.recurrent import forward_loops_skipped
from dlcli.spec.models import RunSpec
from dlcli.train.precompile_fork import watch_pipe
from dlcli.train.zero_steps import layer_step, loss_step, metrics_step, optimizer_step


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
    # the metrics first: the thread leaves them to the child (precompile.py), and its whole step wants them
    steps = [lambda: metrics_step(model),
             *(lambda node=node: layer_step(model, node) for node in reversed(model.nodes)),
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


def prepare() -> None:
    """What an early child does while the run starts (train/precompile_fork.py): Numba's one-time set-up of its
    compiler, which the first compile of a process pays otherwise."""
    prepare_compiler()


def compile_spec(spec_json: dict[str, Any]) -> None:
    """An early child's compiling, once the run has sent its spec (as `spec.model_dump(mode="json")`)."""
    _compile(RunSpec.model_validate(spec_json))


def run_child(spec: RunSpec, stop_fd: int) -> None:
    """A child forked late (the spec in memory): compile, and exit at once when stop_fd (a pipe's read end)
    closes (train/precompile_fork.py runs it, and exits when it returns)."""
    watch_pipe(stop_fd)
    _compile(spec)


def _compile(spec: RunSpec) -> None:
    # a kernel the run's thread is compiling: go on to the next layer rather than wait for it
    share_compiles_between_processes(wait=False)
    with np.errstate(all="ignore"):  # zeros may divide by zero; nobody reads these numbers
        compile_from_the_end(spec)
