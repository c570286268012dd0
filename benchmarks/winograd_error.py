"""Float32 error of each conv2d algorithm against a float64 direct convolution: the output, the input gradient
and the kernel gradient, each as the largest difference relative to the largest float64 value.

The MNIST convnet's two Winograd shapes (13x13x32 -> 64 and 5x5x64 -> 128, batch 64, valid), a 'same' one
(14x70x32 -> 64, the CTC spec's second conv, batch 8), inputs normal or rectified (as after a relu), kernels
Glorot-scaled; the table gives the largest error over inputs and seeds per shape and algorithm.

    python benchmarks/winograd_error.py [--seeds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dlcli.kernels import conv, winograd
from dlcli.ops.conv import WINOGRAD_TILES, geometry

SHAPES = [("conv2d_1 (13x13x32 -> 64)", 64, 13, 13, 32, 64, "valid"),
          ("conv2d_2 (5x5x64 -> 128)", 64, 5, 5, 64, 128, "valid"),
          ("CTC conv (14x70x32 -> 64, same)", 8, 14, 70, 32, 64, "same")]


def im2col_conv(x: np.ndarray, kernel: np.ndarray, g) -> tuple[np.ndarray, np.ndarray]:
    """(conv(x, kernel), the patches) by im2col and one product, in x's dtype."""
    cols = np.empty((x.shape[0] * g.out_h * g.out_w, 9 * x.shape[3]), x.dtype)
    conv.im2col(x, cols, *g.args())
    return (cols @ kernel.reshape(-1, kernel.shape[3])).reshape(x.shape[0], g.out_h, g.out_w, -1), cols


def errors(x64: np.ndarray, k64: np.ndarray, d64: np.ndarray, g, tile: int | None) -> tuple[float, float, float]:
    """(output, input gradient, kernel gradient) errors of float32 im2col (tile None) or Winograd F(tile)."""
    f = k64.shape[3]
    expected, cols = im2col_conv(x64, k64, g)
    expected_dk = (cols.T @ d64.reshape(-1, f)).reshape(k64.shape)
    expected_dx = np.empty_like(x64)
    conv.col2im(d64.reshape(-1, f) @ k64.reshape(-1, f).T, expected_dx, *g.args())
    x, k, d = x64.astype(np.float32), k64.astype(np.float32), d64.astype(np.float32)
    if tile is None:
        out, cols32 = im2col_conv(x, k, g)
        dk = (cols32.T @ d.reshape(-1, f)).reshape(k.shape)
        dx = np.empty_like(x)
        conv.col2im(d.reshape(-1, f) @ k.reshape(-1, f).T, dx, *g.args())
    else:
        out, v, u = winograd.forward(x, k, np.zeros(f, np.float32), conv.LINEAR, g.pad_top, g.pad_left, g.out_h,
                                     g.out_w, tile)
        dx, dk, _ = winograd.backward(d, out, conv.LINEAR, v, u, x.shape, g.pad_top, g.pad_left, True, True, tile)
    return tuple(float(np.abs(a - b).max() / np.abs(b).max())
                 for a, b in ((out, expected), (dx, expected_dx), (dk, expected_dk)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    algorithms = {"im2col": None, **{name: tile for name, tile in WINOGRAD_TILES.items()}}
    results: dict[str, dict[str, list[float]]] = {}
    for name, n, h, w, c, f, padding in SHAPES:
        g = geometry(h, w, (3, 3), (1, 1), (1, 1), padding)
        worst = {a: [0.0, 0.0, 0.0] for a in algorithms}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            for rectified in (False, True):
                x = rng.normal(size=(n, h, w, c))
                x = np.maximum(x, 0) if rectified else x
                k = rng.normal(0, (2 / (9 * c + f)) ** 0.5, size=(3, 3, c, f))
                d = rng.normal(size=(n, g.out_h, g.out_w, f))
                for algorithm, tile in algorithms.items():
                    worst[algorithm] = [max(a, b) for a, b in zip(worst[algorithm], errors(x, k, d, g, tile))]
        results[name] = worst
    print(f"float32 error relative to the largest float64 value, worst of {args.seeds} seeds x 2 inputs")
    print("| layer | algorithm | output | input gradient | kernel gradient |")
    print("|---|---|---|---|---|")
    for name, by_algorithm in results.items():
        for algorithm, (out, dx, dk) in by_algorithm.items():
            print(f"| {name} | {algorithm} | {out:.1e} | {dx:.1e} | {dk:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "winograd_error", "layers": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
