"""The MNIST convnet's three convolutions, batch 64: forward and backward ms of each conv2d algorithm, A/B.

Each layer's Conv2D op runs with algorithm "im2col", "auto" and each Winograd tile (where it applies),
alternating within each repeat, on the benchmark's shapes (28x28x1 -> 32, 13x13x32 -> 64, 5x5x64 -> 128, relu
fused; the first layer without input gradient, as in training) and a first layer over 32x32 RGB images;
the table gives the median over repeats of each repeat's median step, and the ratio to im2col.

    python benchmarks/conv_layers.py [--steps 20] [--repeats 3] [--threads 2] [--json out.json]
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
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--json", type=str, default=None)
ARGS = parser.parse_args()
os.environ.update({v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})

import dlcli  # noqa: E402, F401 - before NumPy: sets OPENBLAS_THREAD_TIMEOUT, as `dlcli train` has it
import numpy as np  # noqa: E402

from dlcli import activations  # noqa: E402
from dlcli.ops import conv  # noqa: E402
from dlcli.ops.conv import Conv2D, geometry, winograd_takes  # noqa: E402
from dlcli.tensor.memory import keep_freed_memory  # noqa: E402

# (name, size, in channels, filters, input gradient needed); the last one is a first layer over RGB images
LAYERS = [("conv2d (1->32, 28x28)", 28, 1, 32, False), ("conv2d_1 (32->64, 13x13)", 13, 32, 64, True),
          ("conv2d_2 (64->128, 5x5)", 5, 64, 128, True), ("RGB (3->32, 32x32)", 32, 3, 32, False)]


def step_ms(op: Conv2D, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, d: np.ndarray,
            needs_x: bool) -> tuple[float, float]:
    """(forward ms, backward ms) of one step."""
    op.needs_grad = (needs_x, True, True)
    start = time.perf_counter()
    op.forward(x, kernel, bias)
    middle = time.perf_counter()
    op.backward(d)
    return (middle - start) * 1e3, (time.perf_counter() - middle) * 1e3


def main() -> int:
    keep_freed_memory()  # as training does: steady-state allocation, not first-touch page faults
    rng = np.random.default_rng(0)
    relu = activations.get("relu")
    results = {}
    for name, size, channels, filters, needs_x in LAYERS:
        g = geometry(size, size, (3, 3), (1, 1), (1, 1), "valid")
        x = rng.random((64, size, size, channels), dtype=np.float32)
        kernel = rng.normal(0, 0.1, (3, 3, channels, filters)).astype(np.float32)
        bias = np.zeros(filters, np.float32)
        d = rng.normal(size=(64, g.out_h, g.out_w, filters)).astype(np.float32)
        # every Winograd tile this checkout has (an older one: "winograd" only)
        tiles = list(getattr(conv, "WINOGRAD_TILES", {"winograd": 2}))
        algorithms = ["im2col", "auto"] + (tiles if winograd_takes(g) else [])
        runs: dict[str, list[tuple[float, float]]] = {a: [] for a in algorithms}
        for _ in range(ARGS.repeats):
            for algorithm in algorithms:  # alternating: each repeat sees the machine as the others do
                op = Conv2D(g, relu, algorithm)
                steps = [step_ms(op, x, kernel, bias, d, needs_x) for _ in range(ARGS.steps + 3)][3:]
                runs[algorithm].append((statistics.median(s[0] for s in steps), statistics.median(s[1] for s in steps)))
        results[name] = {a: {"forward_ms": statistics.median(r[0] for r in rs),
                             "backward_ms": statistics.median(r[1] for r in rs)} for a, rs in runs.items()}
    print(f"conv2d algorithms, batch 64, threads={ARGS.threads}, median of {ARGS.repeats} x {ARGS.steps} steps (ms)")
    print("| layer | algorithm | fwd ms | bwd ms | fwd+bwd vs im2col |")
    print("|---|---|---|---|---|")
    for name, by_algorithm in results.items():
        base = by_algorithm["im2col"]["forward_ms"] + by_algorithm["im2col"]["backward_ms"]
        for algorithm, r in by_algorithm.items():
            print(f"| {name} | {algorithm} | {r['forward_ms']:.2f} | {r['backward_ms']:.2f} | "
                  f"{(r['forward_ms'] + r['backward_ms']) / base:.2f} |")
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps({"benchmark": "conv_layers", "threads": ARGS.threads,
                                               "layers": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
