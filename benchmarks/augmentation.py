"""Milliseconds per batch of the augmentation layers on MNIST-sized images, with PyTorch's grid_sample for scale.

A batch of 64 images (64, 28, 28, 1) float32 goes through each layer in training (the parameter draw, the
matrices and the resampling kernel), and through its backward pass; PyTorch's affine_grid + grid_sample
(bilinear, reflection padding) does the same rotation on (64, 1, 28, 28). Each figure is the median of
`--repeats` calls after warm-up (which also compiles the kernels).

    python benchmarks/augmentation.py [--threads 2] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls; the table gives their median")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch (when it is not installed)")
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before NumPy loads, so every pool has the same size

import numpy as np  # noqa: E402

from dlcli.layers import create_layer  # noqa: E402
from dlcli.tensor import Tensor  # noqa: E402

LAYERS = {
    "random_rotation(0.1) bilinear": {"type": "random_rotation", "factor": 0.1},
    "random_rotation(0.1) nearest": {"type": "random_rotation", "factor": 0.1, "interpolation": "nearest"},
    "random_translation(0.1, 0.1)": {"type": "random_translation", "height_factor": 0.1, "width_factor": 0.1},
    "random_zoom(0.1)": {"type": "random_zoom", "height_factor": 0.1},
    "random_flip": {"type": "random_flip"},
}


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    """Print one line per workload: forward and forward + backward milliseconds per batch."""
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    print(f"batch (64, 28, 28, 1) float32, {ARGS.threads} threads, median of {ARGS.repeats}")
    for label, config in LAYERS.items():
        layer = create_layer(config)
        layer.build((28, 28, 1), np.random.default_rng(0))

        def backward(layer=layer) -> None:  # noqa: ANN001 - the loop's layer
            x = Tensor(images, requires_grad=True)
            layer(x, training=True).sum().backward()

        forward_ms = median_ms(lambda layer=layer: layer(Tensor(images), training=True), ARGS.repeats)
        print(f"  dlcli {label:32s} forward {forward_ms:7.3f} ms   forward+backward "
              f"{median_ms(backward, ARGS.repeats):7.3f} ms")
    if not ARGS.no_torch:
        import torch

        torch.set_num_threads(ARGS.threads)
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        generator = torch.Generator().manual_seed(0)

        def rotate() -> torch.Tensor:
            angles = (torch.rand(64, generator=generator) * 0.2 - 0.1) * 2 * torch.pi
            cos, sin = torch.cos(angles), torch.sin(angles)
            theta = torch.stack([torch.stack([cos, -sin, torch.zeros(64)], 1),
                                 torch.stack([sin, cos, torch.zeros(64)], 1)], 1)
            grid = torch.nn.functional.affine_grid(theta, list(batch.shape), align_corners=True)
            return torch.nn.functional.grid_sample(batch, grid, "bilinear", "reflection", align_corners=True)

        with torch.no_grad():
            print(f"  torch {'affine_grid+grid_sample rotation':32s} forward {median_ms(rotate, ARGS.repeats):7.3f} ms")


if __name__ == "__main__":
    main()
