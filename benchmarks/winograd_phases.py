"""Where a Winograd convolution's time goes: each phase of the MNIST convnet's two Winograd layers, per step.

The forward is the input transform (image -> planes), the planes' matrix products and the output transform
(planes -> image, + bias, relu); the backward the output gradient's transform (after the activation's gradient
and the bias sum), the kernel planes' and the input planes' products and the input gradient's transform. Each
phase's calls are timed around the functions dlcli.kernels.winograd calls (a wrapper per call: a few us), summed
over a step and over the parts threads (with --threads 2 the phases run on both cores side by side, so they add
up to more than the step), median over the steps of each repeat, then over repeats; the last rows are the
whole forward and backward, wall clock.

    python benchmarks/winograd_phases.py [--steps 30] [--repeats 3] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--json", type=str, default=None)
ARGS = parser.parse_args()
os.environ.update({v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})

import dlcli  # noqa: E402, F401 - before NumPy: sets OPENBLAS_THREAD_TIMEOUT, as `dlcli train` has it
import numpy as np  # noqa: E402

from dlcli.kernels import conv, winograd  # noqa: E402
from dlcli.ops.conv import geometry, winograd_fits  # noqa: E402
from dlcli.tensor.memory import keep_freed_memory  # noqa: E402

# (name, size, in channels, filters): the convnet's layers that "auto" gives a Winograd tile
LAYERS = [("conv2d_1 (32->64, 13x13)", 13, 32, 64), ("conv2d_2 (64->128, 5x5)", 5, 64, 128)]
_SPENT: dict[str, float] = collections.defaultdict(float)


def _timed_transforms(tile: int, dtype: np.dtype) -> None:
    """Time winograd._separable's calls, named by the 1-D transform they run."""
    rows = winograd._rows(tile, dtype)
    names = {id(e): name for e, name in zip(rows, ("input transform", "output transform",
                                                     "output-gradient transform", "input-gradient transform"))}
    inner = _timed_transforms.__dict__.setdefault("inner", winograd._separable)

    def separable(e, *args, **kwargs):
        start = time.perf_counter()
        inner(e, *args, **kwargs)
        _SPENT[names[id(e)]] += time.perf_counter() - start

    winograd._separable = separable


class _TimedNumpy:
    """winograd's `np`, with matmul timed: the forward's products, and the backward's two kinds (the kernel
    planes' gradient multiplies transposed input planes)."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        start = time.perf_counter()
        result = np.matmul(a, b, out=out)
        kind = ("kernel-gradient products" if not a.flags.c_contiguous and a.strides[1] < a.strides[2] else
                "input-gradient products" if _timed_matmul_phase[0] == "backward" else "forward products")
        _SPENT[kind] += time.perf_counter() - start
        return result


_timed_matmul_phase = ["forward"]


def main() -> int:
    keep_freed_memory()  # as training does: steady-state allocation, not first-touch page faults
    winograd.np = _TimedNumpy()
    inner_activation = winograd.activation_grad_and_bias_sum

    def activation_grad(*args):
        start = time.perf_counter()
        inner_activation(*args)
        _SPENT["activation gradient + bias sum"] += time.perf_counter() - start

    winograd.activation_grad_and_bias_sum = activation_grad
    rng = np.random.default_rng(0)
    results = {}
    for name, size, channels, filters in LAYERS:
        g = geometry(size, size, (3, 3), (1, 1), (1, 1), "valid")
        tile = winograd_fits(g, channels)
        x = rng.random((64, size, size, channels), dtype=np.float32)
        kernel = rng.normal(0, 0.1, (3, 3, channels, filters)).astype(np.float32)
        bias = np.zeros(filters, np.float32)
        d = rng.normal(size=(64, g.out_h, g.out_w, filters)).astype(np.float32)
        _timed_transforms(tile, np.dtype(np.float32))
        repeats: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(ARGS.repeats):
            steps: dict[str, list[float]] = collections.defaultdict(list)
            for step in range(ARGS.steps + 3):
                _SPENT.clear()
                _timed_matmul_phase[0] = "forward"
                start = time.perf_counter()
                out, planes, kernel_planes = winograd.forward(x, kernel, bias, conv.RELU, 0, 0, g.out_h, g.out_w,
                                                              tile)
                middle = time.perf_counter()
                _timed_matmul_phase[0] = "backward"
                winograd.backward(d, out, conv.RELU, planes, kernel_planes, x.shape, 0, 0, True, True, tile)
                end = time.perf_counter()
                if step >= 3:  # the first calls load kernels and build tables
                    for phase, seconds in _SPENT.items():
                        steps[phase].append(seconds * 1e3)
                    steps["forward (wall)"].append((middle - start) * 1e3)
                    steps["backward (wall)"].append((end - middle) * 1e3)
            for phase, values in steps.items():
                repeats[phase].append(statistics.median(values))
        results[name] = {"tile": tile, "ms": {phase: statistics.median(v) for phase, v in repeats.items()}}
    print(f"Winograd phases, batch 64, relu, threads={ARGS.threads}, median of {ARGS.repeats} x {ARGS.steps} steps "
          "(ms a step, summed over the parts threads)")
    order = ["input transform", "forward products", "output transform", "activation gradient + bias sum",
             "output-gradient transform", "kernel-gradient products", "input-gradient products",
             "input-gradient transform", "forward (wall)", "backward (wall)"]
    print("| phase | " + " | ".join(f"{name} F({r['tile']}x{r['tile']})" for name, r in results.items()) + " |")
    print("|---|" + "---|" * len(results))
    for phase in order:
        print(f"| {phase} | " + " | ".join(f"{r['ms'].get(phase, 0.0):.3f}" for r in results.values()) + " |")
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps({"threads": ARGS.threads, "steps": ARGS.steps,
                                               "repeats": ARGS.repeats, "layers": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
