"""Compile a run's kernels ahead while its data loads, on a fresh machine, on both cores.

Numba compiles a kernel on its first call, and a fresh container or CI job has an empty cache, so the first
training step waits for every kernel its layers, loss and optimizer call (benchmarks/compile_time.py lists
them). Loading the data needs none of them and mostly runs outside the GIL (file reads, decompression, NumPy),
so a thread compiles meanwhile on a copy of the model (train/zero_steps.py): the spec's loss and metrics on
zero targets, each layer's forward and backward on zeros from the first layer to the last, then one whole
training step on a batch of zeros, which compiles the same kernels for the same dtypes and layouts as the run
(the variants its masks and dtypes pick too).

A warm cache still costs the first step: the first kernel call of a process initialises Numba's CPU target (its
lowering registries, about 0.2 s) and every kernel's machine code is read from the cache on its first call, and
the objects that creates set off the collector's full collections (25-80 ms). That was 0.22-0.3 s of the
MNIST convnet's first epoch (its first step took 220-300 ms against 8 for the next ones: issue 17's gap between
`dlcli profile`'s step and the epoch). So on a warm cache the thread runs too, alone, and loads what the zero
steps call while the data loads (the data's decompression releases the GIL): the first step then took 12-22 ms,
the epoch of 30 steps 0.22 s instead of 0.44, and the whole `dlcli train` process no longer (1.32 s against
1.35, median of 6 alternating in one locked run). No child on a warm cache: it would only compile what the
thread loads.

Numba compiles under the GIL, so a thread cannot compile while another thread compiles; a second process can.
So a child process (train/precompile_process.py) meanwhile compiles the
metrics, then the backward passes, from the last layer back to the first, the recurrent layers' forward time
loops left out (ops/recurrent.py forward_loops_skipped), then the optimizer and the loss; the thread then takes
the loss and the forwards from the first layer on, then the backward passes from the first layer until it
meets the child, then the optimizer, skipping what the child is compiling (compile_from_the_start), and its
whole step finds the rest compiled. Split by pass rather than by layer, because layers of one kind share their
kernels (seq2seq_reverse's two LSTMs): by layer, both processes wanted the same time loops. A child for every
run: the first run's compile time (benchmarks/cold_start.py, cold - warm, one locked run alternating with and
without) went from 1.4-1.6 to 0.7-0.8 s for mnist_convnet, 1.6 to 1.1 s for text_transformer_graph, 1.6 to 1.4 s for
text_transformer, and stayed 0.3 s for digits_mlp (0.3 s more CPU on the other core). Numba reads a kernel's
cache index when it first meets a signature, so whichever process comes second to a kernel loads it;
kernels/cache.py makes a process that misses a signature the other is compiling wait for it and load it rather
than compile it twice, and makes their index updates take turns (files are written whole and renamed, so a
reader never sees half a file). Loading from the cache gives the very machine code compiling gives, so the
run's results are unchanged. Not under MPI (the ranks already fill the cores), and not where DLCLI_PRECOMPILE
says "thread" (the thread alone) or "off" (neither).

The run waits for the thread before its first step, so the two never run ops at the same time (ops hold a
process-wide BLAS setting while a kernel runs, kernels/blas.py); when the thread's whole step went through,
everything the run's steps call is compiled and the child is told to stop (it would only compete with the run
for the cores). When that step failed (a text spec's vocabulary comes with its data) the child finishes its
layers while the run starts, and is stopped at the run's end at the latest. `dlcli train` forks the child
at its start, before it reads the spec, so that Numba's one-time set-up in the child runs while the run loads
its spec and builds its model, and this module hands it the spec; other callers (tune, warmup,
tests) get a child forked here, before the thread starts, that inherits everything (train/precompile_fork.py
says how either dies with the run: a pipe, however the run ends, and SIGINT ignored). A child that fails to
start or fails while compiling only compiles less: the run compiles the rest itself.

The copies are built from their own random streams, so the run's weights, dropout masks and shuffles are
exactly those of a run without them. A step that fails (a layer that needs adapted statistics, text inputs)
only compiles less: the run itself then meets the same code and reports whatever is wrong.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dlcli.graph import build_model
from dlcli.spec.models import RunSpec
from dlcli.train import precompile_fork
from dlcli.train.environment import precompile_mode
from dlcli.train.precompile_fork import COMPILE_GC_THRESHOLDS, ForkedChild, fork_child
from dlcli.train.zero_steps import layer_step, loss_step, optimizer_step, training_step

INTERRUPTED_WAIT_SECONDS = 2.0  # how long an interrupted run waits for the thread to finish the step in hand


class Precompile:
    """The thread and the child process (when there is one) compiling a run's kernels ahead."""

    def __init__(self, spec: RunSpec, with_child: bool, early: ForkedChild | None = None) -> None:
        self.spec = spec
        self.thread = threading.Thread(target=self._compile, name="dlcli-precompile", daemon=True)
        self._gc_thresholds: tuple[int, ...] | None = gc.get_threshold()
        gc.freeze()  # before a fork: the child inherits both
        gc.set_threshold(*COMPILE_GC_THRESHOLDS)
        self.child: ForkedChild | None = None
        if early is not None and (not with_child or not early.send_spec(spec)):
            early.reap()  # not wanted after all, or gone
        elif early is not None:
            self.child = early  # forked at the start of dlcli train (train/precompile_fork.py)
        elif with_child:
            self.child = _start_child(spec)
        self.stepped = False  # whether the thread's step went through: then it compiled all a step calls
        self.cancelled = threading.Event()  # set: the thread stops after the step in hand (cancel)
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread (at most `timeout` seconds); stop the child when the thread's step has compiled
        everything (module doc)."""
        self.thread.join(timeout)
        if self._gc_thresholds is not None:  # the run's own collection settings, for its steps
            gc.set_threshold(*self._gc_thresholds)
            gc.unfreeze()
            self._gc_thresholds = None
        if self.stepped:
            self.stop(wait=False)

    def cancel(self) -> None:
        """The run will not train (its data failed to load): stop the child, and have the thread stop after the
        step in hand (the loss, or one layer's forward or backward), so that the error is not held back until
        every kernel has compiled (on an empty cache, many seconds for a recurrent model)."""
        self.cancelled.set()
        self.stop()

    def stop(self, wait: bool = True) -> None:
        """Stop the child: it exits when its pipe closes. With `wait`, reap it, killing it if it has not exited
        after a moment; without, it is reaped by the next stop (the run's end)."""
        child = self.child
        if child is None:
            return
        child.tell_to_stop()
        if wait:
            self.child = None
            child.reap()

    def _compile(self) -> None:
        try:
            self.stepped = compile_from_the_start(self.spec, with_child=self.child is not None,
                                                  cancelled=self.cancelled)
        except Exception:  # noqa: BLE001 - best effort: the run compiles whatever this did not (module doc)
            pass


@contextlib.contextmanager
def compiling_ahead(spec: RunSpec, processes: int = 1) -> Iterator[Precompile | None]:
    """start_precompile around the block that loads the data; at its end the thread is joined (no op of the
    thread's may overlap the run's), and a block that raises cancels the compiling first (Precompile.cancel)."""
    compiling = start_precompile(spec, processes)
    interrupted = False
    try:
        yield compiling
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        if compiling is not None:
            compiling.cancel()
        raise
    finally:
        if compiling is not None:
            # after a KeyboardInterrupt the thread may wait forever on an import lock the interrupt left held
            # (CPython's race: an interrupt inside importlib's _get_module_lock): the process is ending and the
            # thread is a daemon, so wait only a moment
            compiling.join(timeout=INTERRUPTED_WAIT_SECONDS if interrupted else None)


def start_precompile(spec: RunSpec, processes: int = 1) -> Precompile | None:
    """Start compiling (or, from a warm cache, loading) the spec's kernels ahead: a thread, and on an empty cache a
    child process unless the run has several MPI `processes` or DLCLI_PRECOMPILE says otherwise; None when
    DLCLI_PRECOMPILE is "off"."""
    from dlcli.kernels.cache import holds_no_kernels, share_compiles_between_processes

    early = precompile_fork.take_early_child()  # forked at the start of dlcli train, if it was
    mode = precompile_mode()
    if mode == "off":
        if early is not None:
            early.reap()
        return None
    if not holds_no_kernels():  # a warm cache: the thread loads the kernels (module doc)
        return Precompile(spec, with_child=False, early=early)
    from dlcli.train.launcher import under_mpi_launcher

    # not under an MPI launcher even as its only rank: MPI libraries do not take forking well
    with_child = mode == "process" and processes == 1 and not under_mpi_launcher()
    return Precompile(spec, with_child and share_compiles_between_processes(), early)


def _start_child(spec: RunSpec) -> ForkedChild | None:
    """Fork the child that compiles the backward passes now (no early one was forked); None where fork does not
    exist or fails. Forked before the thread starts, so the child has one thread, and what it runs was imported
    already."""
    from dlcli.train.precompile_process import run_child

    return fork_child(lambda pipe: run_child(spec, pipe))


def compile_from_the_start(spec: RunSpec, with_child: bool = False, cancelled: threading.Event | None = None) -> bool:
    """The loss and metrics, then each layer's forward and backward from the first to the last, then one whole
    training step: True when that step went through, compiling every variant the run calls.

    With a child (which takes the metrics, then the backward passes from the last layer, then the optimizer): the
    loss, the layers' forwards from the first, then their backward passes from the first, until the two meet,
    then the optimizer (a small kernel last in both lists: whichever comes first takes it); a kernel the child
    is compiling is skipped (the whole step waits for it and loads it) rather than waited for. Waiting left the
    thread idle while the child still had work: mnist_convnet --timeline, the thread waited 0.15 s for the
    second conv's forward (tile_transform) and, its list done at 1.34 s, for the first conv's backward
    (backward_images, 0.58 s CPU) until 2.06 s, 1.39 s of CPU in the child against 0.56 in the thread."""
    from dlcli.kernels.cache import claimed_kernels_skipped

    cancelled = cancelled or threading.Event()
    model = build_model(spec.model, np.random.default_rng(0), spec)
    with np.errstate(all="ignore"):  # zeros may divide by zero; nobody reads these numbers (thread-local state)
        if with_child:
            with claimed_kernels_skipped():
                _steps(_shared_steps(model, spec), cancelled)
        else:
            _steps([lambda: loss_step(model),
                    *(lambda node=node: layer_step(model, node) for node in model.nodes)], cancelled)
        return not cancelled.is_set() and training_step(model, spec)


def _shared_steps(model: Any, spec: RunSpec) -> list[Callable[[], Any]]:
    """The thread's steps beside a child: the metrics are the child's (its first step), as the thread also pays
    Numba's set-up, which the child paid before its spec came."""
    return [lambda: loss_step(model, metrics=False),
            *(lambda node=node: layer_step(model, node, backward=False) for node in model.nodes),
            *(lambda node=node: layer_step(model, node) for node in model.nodes),
            lambda: optimizer_step(model, spec)]


def _steps(steps: list[Callable[[], Any]], cancelled: threading.Event) -> None:
    for step in steps:
        if cancelled.is_set():
            return
        try:
            step()
        except Exception:  # noqa: BLE001 - what zeros cannot compile (or the child compiles), the whole step or
            continue  # the run compiles
