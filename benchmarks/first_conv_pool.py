"""The MNIST convnet's first conv2d (1 -> 32, 28x28, relu) and its 2x2 max pool, batch 64: forward and backward
ms of three variants, alternating within each repeat: the two ops apart (the conv output and the pool's
gradient written out whole); the backward fused (ops/pool.ConvMaxPool, what max_pool2d takes after such a conv:
the pool differentiated straight to the conv's weights); forward and backward fused (ops.conv2d_max_pool2d, what
a graph runs when the pool alone reads the conv: one pass from the image to the pooled output, no conv output).
The table gives the median over repeats of each repeat's median step and the ratio to the ops apart; then the
largest difference of each fused variant's output and of its kernel's and bias's gradients from the ops
apart, relative to the largest value.

    python benchmarks/first_conv_pool.py [--steps 40] [--repeats 5] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--json", type=str, default=None)
ARGS = parser.parse_args()
os.environ.update({v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})

import dlcli  # noqa: E402, F401 - before NumPy: sets OPENBLAS_THREAD_TIMEOUT, as `dlcli train` has it
import numpy as np  # noqa: E402

from dlcli import ops  # noqa: E402
from dlcli.ops.conv import geometry  # noqa: E402
from dlcli.ops.pool import ConvMaxPool, MaxPool  # noqa: E402
from dlcli.tensor import Tensor  # noqa: E402
from dlcli.tensor.memory import keep_freed_memory  # noqa: E402

GEOMETRY = geometry(28, 28, (3, 3), (1, 1), (1, 1), "valid")
VARIANTS = {
    "ops apart": lambda x, w, b: MaxPool.apply(ops.conv2d(x, w, b, GEOMETRY, "relu"), pool_size=(2, 2),
                                               strides=(2, 2), padding="valid"),
    "fused backward": lambda x, w, b: ops.max_pool2d(ops.conv2d(x, w, b, GEOMETRY, "relu"), 2),
    "fused forward and backward": lambda x, w, b: ops.conv2d_max_pool2d(x, w, b, GEOMETRY, "relu", "auto", 2)}


def step(layers, x: Tensor, kernel: np.ndarray, bias: np.ndarray, d: np.ndarray) -> tuple[float, float, tuple]:
    """(forward ms, backward ms, (output, kernel gradient, bias gradient)) of one training step of the two
    layers."""
    w, b = Tensor(kernel, requires_grad=True), Tensor(bias, requires_grad=True)
    start = time.perf_counter()
    out = layers(x, w, b)
    middle = time.perf_counter()
    data = out.data
    out.backward(d)
    return (middle - start) * 1e3, (time.perf_counter() - middle) * 1e3, (data, w.grad, b.grad)


def main() -> int:
    keep_freed_memory()  # as training does: steady-state allocation, not first-touch page faults
    rng = np.random.default_rng(0)
    x = Tensor(rng.random((ARGS.batch, 28, 28, 1), dtype=np.float32))
    kernel = rng.normal(0, 0.3, (3, 3, 1, 32)).astype(np.float32)
    bias = rng.normal(0, 0.05, 32).astype(np.float32)
    d = rng.normal(size=(ARGS.batch, 13, 13, 32)).astype(np.float32)
    for name in ("fused backward", "fused forward and backward"):
        assert type(VARIANTS[name](x, Tensor(kernel, requires_grad=True), Tensor(bias)).op) is ConvMaxPool
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    values = {}
    for _ in range(ARGS.repeats):
        for name, layers in VARIANTS.items():  # alternating: each repeat sees the machine as the others do
            steps = [step(layers, x, kernel, bias, d) for _ in range(ARGS.steps + 3)][3:]
            values[name] = steps[-1][2]
            runs[name].append((statistics.median(s[0] for s in steps), statistics.median(s[1] for s in steps)))
    results = {name: {"forward_ms": statistics.median(r[0] for r in rs),
                      "backward_ms": statistics.median(r[1] for r in rs)} for name, rs in runs.items()}
    for name, result in results.items():  # relative to the largest value of the ops apart
        apart = values["ops apart"]
        result["max_relative_output_difference"], result["max_relative_gradient_difference"] = (
            float(np.abs(values[name][0] - apart[0]).max() / np.abs(apart[0]).max()),
            max(float(np.abs(f - a).max() / np.abs(a).max()) for a, f in zip(apart[1:], values[name][1:])))
    base = results["ops apart"]["forward_ms"] + results["ops apart"]["backward_ms"]
    print(f"conv2d (1->32, 28x28, relu) + max_pooling2d 2x2, batch {ARGS.batch}, threads={ARGS.threads}, "
          f"median of {ARGS.repeats} x {ARGS.steps} steps (ms)")
    print("| variant | fwd ms | bwd ms | fwd+bwd vs apart | output difference | gradient difference |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['forward_ms']:.3f} | {r['backward_ms']:.3f} | "
              f"{(r['forward_ms'] + r['backward_ms']) / base:.2f} | {r['max_relative_output_difference']:.1e} | "
              f"{r['max_relative_gradient_difference']:.1e} |")
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps({"benchmark": "first_conv_pool", "threads": ARGS.threads,
                                               "batch": ARGS.batch, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
