"""`dlcli warmup`: compile the Numba kernels into the on-disk cache ahead of the first real run.

Numba compiles a kernel on its first call and caches the machine code under NUMBA_CACHE_DIR (or beside the
kernel's source file). A fresh container or CI job starts with an empty cache, so its first run pays every
compile. Warming up once, in a Docker image layer or a CI cache step, moves that cost out of every later run.

For a spec, warming up is training it for one step of one epoch into a temporary run directory: the same code
path as `dlcli train`, so exactly the kernels, dtypes and layouts of that run compile (and its dataset is
downloaded into the data cache too). Without a spec, tiny float32 models built from every layer family, every
optimizer and the CTC loss and decoders compile every kernel a training run can call.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import ops
from dlcli.data.csv_numbers import read_numbers
from dlcli.data.plain_png import load_kernels as load_png_kernels
from dlcli.kernels.cache import share_compiles_between_processes
from dlcli.layers import create_layer
from dlcli.layers.base import Layer
from dlcli.optimizers import create_optimizer
from dlcli.tensor import Tensor, no_grad
from dlcli.train.environment import precompile_mode
from dlcli.train.launcher import usable_cores
from dlcli.train.precompile_fork import watch_pipe

# (input shape with batch, input dtype, layers): together they call every kernel family in dlcli/kernels/
_STACKS: list[tuple[tuple[int, ...], Any, list[dict[str, Any]]]] = [
    ((2, 6, 6, 1), np.float32, [
        {"type": "random_flip"}, {"type": "random_rotation", "factor": 0.1},
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "batch_normalization"}, {"type": "max_pooling2d", "pool_size": 2},
        # a window larger than 2 x 2 takes the other max-pooling kernel
        {"type": "max_pooling2d", "pool_size": 3, "strides": 1, "padding": "same"},
        {"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "tanh"},
        {"type": "average_pooling2d", "pool_size": 2}, {"type": "flatten"}, {"type": "dense", "units": 2}]),
    ((1, 8, 8, 16), np.float32, [  # conv2d's Winograd kernels: tile_map (F(2x2)), tile_transform (F(4x4))
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same", "activation": "relu",
         "algorithm": "winograd"},
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu", "algorithm": "winograd_4x4"},
        {"type": "flatten"}, {"type": "dense", "units": 2}]),
    ((2, 5), np.int64, [
        {"type": "embedding", "input_dim": 7, "output_dim": 3, "mask_zero": True},
        {"type": "simple_rnn", "units": 3, "return_sequences": True},
        {"type": "lstm", "units": 3, "return_sequences": True},
        {"type": "gru", "units": 3, "return_sequences": True, "reset_after": False},
        # with recurrent dropout the time loops compile their per-gate products (a variant of their own)
        {"type": "simple_rnn", "units": 3, "return_sequences": True, "recurrent_dropout": 0.1},
        {"type": "lstm", "units": 3, "return_sequences": True, "recurrent_dropout": 0.1},
        {"type": "gru", "units": 3, "return_sequences": True, "reset_after": False, "recurrent_dropout": 0.1},
        {"type": "gru", "units": 3, "return_sequences": True, "recurrent_dropout": 0.1},
        {"type": "bidirectional", "layer": {"type": "gru", "units": 3}}, {"type": "dense", "units": 2}]),
    ((2, 5, 3), np.float32, [  # without a mask the time loops compile their variants that carry no masked steps
        {"type": "simple_rnn", "units": 3, "return_sequences": True},
        {"type": "simple_rnn", "units": 3, "return_sequences": True, "recurrent_dropout": 0.1},
        {"type": "lstm", "units": 3, "return_sequences": True},
        {"type": "lstm", "units": 3, "return_sequences": True, "recurrent_dropout": 0.1},
        {"type": "gru", "units": 3, "return_sequences": True, "reset_after": False},
        {"type": "gru", "units": 3, "return_sequences": True, "reset_after": False, "recurrent_dropout": 0.1},
        {"type": "gru", "units": 3, "return_sequences": True, "recurrent_dropout": 0.1},
        {"type": "gru", "units": 3}, {"type": "dense", "units": 2}]),
    ((2, 5), np.int64, [  # attention's masked softmax and layer normalization
        {"type": "positional_embedding", "sequence_length": 5, "input_dim": 7, "output_dim": 4},
        {"type": "transformer_encoder", "embed_dim": 4, "dense_dim": 3, "num_heads": 2},
        {"type": "flatten"}, {"type": "dense", "units": 2}]),
]
_OPTIMIZERS: list[dict[str, Any]] = [
    {"type": "sgd"}, {"type": "sgd", "momentum": 0.9}, {"type": "rmsprop"}, {"type": "adagrad"}, {"type": "adam"},
    {"type": "adam", "sparse_updates": "lazy"},
    # the options that add a slot compile updates of their own (kernels/optim.py)
    {"type": "rmsprop", "centered": True}, {"type": "rmsprop", "momentum": 0.9},
    {"type": "rmsprop", "centered": True, "momentum": 0.9}, {"type": "adam", "amsgrad": True},
]


def warm_up_kernels(from_the_end: bool = False) -> None:
    """Compile every kernel a float32 training run can call: each layer family forward (training and
    inference) and backward, every optimizer's update on dense and sparse gradients, the CTC loss, decoders
    and edit distance, the parser of large CSV files of numbers and the PNG row unfilter of image folders.

    Numba compiles one kernel at a time in a process, so a second process takes the warm-ups from the last one
    back while this one takes them from the first (_helper); each kernel compiles once between the two, the other
    loading it from the cache. This process runs every warm-up whatever the helper does, so the cache is
    complete when it returns.
    """
    rng = np.random.default_rng(0)
    steps = [*(functools.partial(_warm_up_stack, *stack) for stack in _STACKS), _warm_up_first_conv, _warm_up_ctc,
             _warm_up_readers, *(functools.partial(_warm_up_optimizer, config) for config in _OPTIMIZERS)]
    if from_the_end:
        share_compiles_between_processes()
        # Ctrl-C reaches the process group: warmup handles it and closes the pipe, which ends this process (a
        # KeyboardInterrupt here could stop Numba between writing a cache file and renaming it)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        watch_pipe(0)  # exit when the process that started this one closes stdin or is gone
        steps.reverse()
    helper = None if from_the_end else _helper()
    try:
        for step in steps:
            step(rng)
        if helper is not None:
            helper.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):  # the finally kills one that is not gone by then
                helper.wait(_HELPER_EXIT_WAIT)  # it exits at its pipe's end
    finally:
        if helper is not None and helper.poll() is None:  # an error or an interrupt here: the helper stops too
            helper.kill()
            helper.wait()


_HELPER_EXIT_WAIT = 10.0  # seconds for the helper to exit once its pipe is closed (its imports may not be done)


def _helper() -> subprocess.Popen | None:
    """The second process of warm_up_kernels, or None (warmup then compiles alone): on one core; where processes
    cannot take turns filling the cache (no flock); or with DLCLI_PRECOMPILE=thread or off, as `train` then
    compiles in one process too."""
    if usable_cores() < 2 or precompile_mode() != "process" \
            or not share_compiles_between_processes():
        return None
    code = "from dlcli.train.warmup import warm_up_kernels; warm_up_kernels(from_the_end=True)"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _warm_up_stack(in_shape: tuple[int, ...], dtype: Any, configs: list[dict[str, Any]],
                   rng: np.random.Generator) -> None:
    """A stack of layers forward in training and inference, and backward."""
    layers = _built(configs, in_shape[1:], rng)
    # float images require a gradient, so the augmentation layers' backward kernels compile too
    x = Tensor(rng.integers(0, 7, in_shape)) if dtype == np.int64 else \
        Tensor(rng.random(in_shape, dtype=np.float32), requires_grad=True)
    _forward(layers, x, training=True).sum().backward()
    with no_grad():
        _forward(layers, x, training=False)


def _warm_up_optimizer(config: dict[str, Any], rng: np.random.Generator) -> None:
    """One optimizer's update of every parameter at once (dense gradients only), and parameter by parameter (an
    embedding's sparse gradient among them)."""
    layers = _built([{"type": "embedding", "input_dim": 7, "output_dim": 3}, {"type": "flatten"},
                     {"type": "dense", "units": 2}], (5,), rng)
    _forward(layers, Tensor(rng.integers(0, 7, (2, 5))), training=True).sum().backward()
    params = {f"{layer.name}/{name}": t for layer in layers for name, t in layer.weights().items()}
    dense = {name: t for name, t in params.items() if type(t.grad) is np.ndarray}
    assert len(dense) < len(params), "the embedding's gradient is sparse"
    create_optimizer(config, params).step()
    create_optimizer(config, dense).step()


def _warm_up_readers(rng: np.random.Generator) -> None:
    """The parser of large CSV files of numbers and the PNG row unfilter."""
    read_numbers(b"a,b\n1.5,-2e3\n", (), min_bytes=0)
    load_png_kernels()


def _built(configs: list[dict[str, Any]], in_shape: tuple[int, ...], rng: np.random.Generator) -> list[Layer]:
    layers, shape = [], in_shape
    for index, config in enumerate(configs):
        layer = create_layer({**config, "name": f"{config['type']}_{index}"})
        shape = layer.build(shape, rng)
        layers.append(layer)
    return layers


def _forward(layers: list[Layer], x: Tensor, training: bool) -> Tensor:
    out = x
    for layer in layers:
        result = layer(out, training=training)
        out = result[0] if isinstance(result, tuple) else result
    return out


def _warm_up_first_conv(rng: np.random.Generator) -> None:
    """A first conv2d on 1-channel images whose input needs no gradient, and its max pool, called as a graph
    calls the pair (Conv2D.with_max_pool): the fused forward and backward (kernels/conv_one_channel.py), which
    the stacks above (inputs with a gradient) never call; the plain conv's backward is the same kernel."""
    conv, pool = _built([{"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"},
                         {"type": "max_pooling2d", "pool_size": 2}], (6, 6, 1), rng)
    x = Tensor(rng.random((2, 6, 6, 1), dtype=np.float32))
    conv.with_max_pool(pool, x, training=True).sum().backward()  # type: ignore[attr-defined]


def _warm_up_ctc(rng: np.random.Generator) -> None:
    """The CTC loss (both kernels), its decoders and the edit distance."""
    from dlcli.decoding import ctc_beam_search_decode, ctc_greedy_decode
    from dlcli.metrics import create_metric

    logits = Tensor(rng.normal(size=(2, 6, 4)).astype(np.float32), requires_grad=True)
    labels = np.array([[1, 2, -1], [0, 0, 1]], np.int64)
    ops.ctc_loss(logits, labels).sum().backward()
    # probabilities that underflow (e^-800) take the log-space kernel, which ordinary batches never compile
    underflow = np.array([[[0, -1000, -1000], [-800, 0, -800], [-1000, -1000, 0]]], np.float32)
    ops.ctc_loss(Tensor(underflow, requires_grad=True), np.array([[0]], np.int64)).sum().backward()
    probabilities = ops.softmax(Tensor(logits.data)).data
    ctc_greedy_decode(probabilities)
    ctc_beam_search_decode(probabilities, beam_width=2)
    metric = create_metric("edit_distance")
    metric.update(probabilities, labels)


def warm_up_spec(spec_path: Path, overrides: tuple[str, ...] = ()) -> None:
    """Train the spec for one step of one epoch into a temporary run directory, which is then removed."""
    from dlcli.spec.load import load_spec
    from dlcli.train.fit import fit_run

    spec = load_spec(spec_path, [*overrides, "train.epochs=1", "train.steps_per_epoch=1"])
    with tempfile.TemporaryDirectory(prefix="dlcli-warmup-") as folder:
        fit_run(spec, Path(folder) / "run", [])


def timed(action: Any, *args: Any) -> float:
    """Seconds that action(*args) took."""
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start
