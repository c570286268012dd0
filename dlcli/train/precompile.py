"""Compile a run's kernels in a background thread while its data loads, on a fresh machine.

Numba compiles a kernel on its first call, and a fresh container or CI job has an empty cache, so the first
training step waits for every kernel its layers and optimizer call (benchmarks/compile_time.py lists them).
Loading the data needs none of them and mostly runs outside the GIL (file reads, decompression, NumPy), so
a thread runs one step on a copy of the model meanwhile: its forward and backward on a small batch of zeros,
and the optimizer's update of the copy's weights, which compiles the same kernels for the same dtypes and
layouts. Only for an empty cache: with a warm one there is nothing to gain and a copy of the model to pay for.

The run waits for the thread before its first step, so the two never run ops at the same time (ops hold a
process-wide BLAS setting while a kernel runs, kernels/blas.py). A kernel both want is compiled once: Numba
compiles under one lock and looks for the signature again once it holds it. The copy is built from its own
random stream, so the run's weights, dropout masks and shuffles are exactly those of a run without it. A
step that fails (a layer that needs adapted statistics, text inputs) only compiles less: the run itself then
meets the same code and reports whatever is wrong.
"""

from __future__ import annotations

import threading

import numpy as np

from dlcli.graph import build_model
from dlcli.optimizers import create_optimizer
from dlcli.spec.models import RunSpec
from dlcli.tensor import Tensor

_BATCH = 4  # rows of the warm-up batch: the kernels' signatures depend on dtypes and layouts, not sizes


def start_precompile(spec: RunSpec) -> threading.Thread | None:
    """Start compiling the spec's layer and optimizer kernels in a background thread when the kernel cache is
    empty; returns the thread to join before training, or None."""
    from dlcli.kernels.cache import holds_no_kernels

    if not holds_no_kernels():
        return None
    thread = threading.Thread(target=_step_quietly, args=(spec,), name="dlcli-precompile", daemon=True)
    thread.start()
    return thread


def _step_quietly(spec: RunSpec) -> None:
    try:
        one_step_on_a_copy(spec)
    except Exception:  # noqa: BLE001 - best effort: the run compiles whatever this did not (see the docstring)
        pass


def one_step_on_a_copy(spec: RunSpec) -> None:
    """One training step of a copy of the spec's model on zeros: forward, backward and an optimizer update."""
    model = build_model(spec.model, np.random.default_rng(0), spec)
    if any(spec_input.dtype == "string" for spec_input in model.inputs.values()):
        return  # text_vectorization needs its adapted vocabulary, which comes with the data
    inputs = {name: Tensor(np.zeros((_BATCH, *shape.shape), shape.dtype)) for name, shape in model.inputs.items()}
    total = None
    for out in model(inputs, training=True).values():
        part = out.sum()
        total = part if total is None else total + part
    if total is None:
        return
    total.backward()
    params = {name: t for name, t in model.trainable_parameters().items() if t.grad is not None}
    create_optimizer(spec.train.optimizer.model_dump(), params).step()
