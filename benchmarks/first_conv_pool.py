"""The MNIST convnet's first conv2d (1 -> 32, 28x28, relu) and its 2x2 max pool, batch 64: forward and backward
ms with the pool differentiated straight to the conv's weights (ops/pool.ConvMaxPool, what max_pool2d takes
after such a conv) against the two ops apart (the pool's gradient written out whole, the conv's backward
reading it), alternating within each repeat; the table gives the median over repeats of each repeat's median
step, the ratio to the ops apart, and the largest difference of the kernel's and bias's gradients between the
two, relative to the largest gradient.

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
VARIANTS = {"ops apart": lambda c: MaxPool.apply(c, pool_size=(2, 2), strides=(2, 2), padding="valid"),
            "fused backward": lambda c: ops.max_pool2d(c, 2)}


def step(pool, x: Tensor, kernel: np.ndarray, bias: np.ndarray, d: np.ndarray) -> tuple[float, float, tuple]:
    """(forward ms, backward ms, (kernel gradient, bias gradient)) of one training step of the two layers."""
    w, b = Tensor(kernel, requires_grad=True), Tensor(bias, requires_grad=True)
    start = time.perf_counter()
    out = pool(ops.conv2d(x, w, b, GEOMETRY, "relu"))
    middle = time.perf_counter()
    out.backward(d)
    return (middle - start) * 1e3, (time.perf_counter() - middle) * 1e3, (w.grad, b.grad)


def main() -> int:
    keep_freed_memory()  # as training does: steady-state allocation, not first-touch page faults
    rng = np.random.default_rng(0)
    x = Tensor(rng.random((ARGS.batch, 28, 28, 1), dtype=np.float32))
    kernel = rng.normal(0, 0.3, (3, 3, 1, 32)).astype(np.float32)
    bias = rng.normal(0, 0.05, 32).astype(np.float32)
    d = rng.normal(size=(ARGS.batch, 13, 13, 32)).astype(np.float32)
    assert type(VARIANTS["fused backward"](ops.conv2d(x, Tensor(kernel, requires_grad=True), Tensor(bias),
                                                      GEOMETRY, "relu")).op) is ConvMaxPool
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    grads = {}
    for _ in range(ARGS.repeats):
        for name, pool in VARIANTS.items():  # alternating: each repeat sees the machine as the other does
            steps = [step(pool, x, kernel, bias, d) for _ in range(ARGS.steps + 3)][3:]
            grads[name] = steps[-1][2]
            runs[name].append((statistics.median(s[0] for s in steps), statistics.median(s[1] for s in steps)))
    apart, fused = grads["ops apart"], grads["fused backward"]
    difference = max(float(np.abs(f - a).max() / np.abs(a).max()) for a, f in zip(apart, fused))
    results = {name: {"forward_ms": statistics.median(r[0] for r in rs),
                      "backward_ms": statistics.median(r[1] for r in rs)} for name, rs in runs.items()}
    base = results["ops apart"]["forward_ms"] + results["ops apart"]["backward_ms"]
    print(f"conv2d (1->32, 28x28, relu) + max_pooling2d 2x2, batch {ARGS.batch}, threads={ARGS.threads}, "
          f"median of {ARGS.repeats} x {ARGS.steps} steps (ms)")
    print("| variant | fwd ms | bwd ms | fwd+bwd vs apart |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['forward_ms']:.3f} | {r['backward_ms']:.3f} | "
              f"{(r['forward_ms'] + r['backward_ms']) / base:.2f} |")
    print(f"largest gradient difference, fused against apart: {difference:.1e} of the largest gradient")
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps({"benchmark": "first_conv_pool", "threads": ARGS.threads,
                                               "batch": ARGS.batch, "results": results,
                                               "max_relative_gradient_difference": difference}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
