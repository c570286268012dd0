"""Max pooling and batch normalization, forward + backward: dlcli's ops against PyTorch CPU, in one run.

Shapes are those of the ch. 8 MNIST convnet at batch 64: max pooling on (64, 26, 26, 32) (after the first
Conv2D(32, 3)), batch normalization on (64, 11, 11, 64) (after the second Conv2D). dlcli runs channels-last,
PyTorch NCHW on the same values. Each time is the median of --steps steps after a warm-up step.

    python benchmarks/pool_batchnorm.py [--threads 2] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--steps", type=int, default=200)
ARGS.add_argument("--no-torch", action="store_true")
ARGS = ARGS.parse_args()
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[name] = str(ARGS.threads)

import numpy as np  # noqa: E402

from dlcli import ops  # noqa: E402
from dlcli.tensor import Tensor  # noqa: E402


def median_ms(step: Callable[[], object]) -> float:
    """Median wall time of one call, in milliseconds, after one warm-up call (Numba compiles there)."""
    step()
    times = []
    for _ in range(ARGS.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def dlcli_times(pool_x: np.ndarray, norm_x: np.ndarray) -> dict[str, float]:
    """dlcli: max_pool2d forward, forward + backward, and batch_normalization forward + backward."""
    gamma, beta = (Tensor(np.full(64, v, np.float32), requires_grad=True) for v in (1.0, 0.0))
    d_pool = np.ones((64, 13, 13, 32), np.float32)  # output gradients made once, as the loss would hand them
    d_norm = np.ones(norm_x.shape, np.float32)

    def pool_forward() -> None:
        ops.max_pool2d(Tensor(pool_x, requires_grad=True), 2)

    def pool_step() -> None:
        ops.max_pool2d(Tensor(pool_x, requires_grad=True), 2).backward(d_pool)

    def norm_step() -> None:
        out, _, _ = ops.batch_normalization(Tensor(norm_x, requires_grad=True), gamma, beta)
        out.backward(d_norm)

    return {"max_pool forward": median_ms(pool_forward), "max_pool forward+backward": median_ms(pool_step),
            "batch_norm forward+backward": median_ms(norm_step)}


def torch_times(pool_x: np.ndarray, norm_x: np.ndarray) -> dict[str, float]:
    """PyTorch on the same values in NCHW: F.max_pool2d and F.batch_norm in training mode."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(ARGS.threads)
    pool_t = torch.from_numpy(pool_x).permute(0, 3, 1, 2).contiguous().requires_grad_()
    norm_t = torch.from_numpy(norm_x).permute(0, 3, 1, 2).contiguous().requires_grad_()
    gamma, beta = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    running_mean, running_var = torch.zeros(64), torch.ones(64)
    d_pool, d_norm = torch.ones(64, 32, 13, 13), torch.ones(norm_t.shape)

    def pool_forward() -> None:
        F.max_pool2d(pool_t, 2)

    def pool_step() -> None:
        F.max_pool2d(pool_t, 2).backward(d_pool)

    def norm_step() -> None:
        out = F.batch_norm(norm_t, running_mean, running_var, gamma, beta, training=True, momentum=0.01, eps=1e-3)
        out.backward(d_norm)

    return {"max_pool forward": median_ms(pool_forward), "max_pool forward+backward": median_ms(pool_step),
            "batch_norm forward+backward": median_ms(norm_step)}


def main() -> None:
    """Print one row per measurement: dlcli ms, PyTorch ms, and their ratio."""
    rng = np.random.default_rng(0)
    pool_x = rng.normal(size=(64, 26, 26, 32)).astype(np.float32)
    norm_x = rng.normal(size=(64, 11, 11, 64)).astype(np.float32)
    ours = dlcli_times(pool_x, norm_x)
    theirs = {} if ARGS.no_torch else torch_times(pool_x, norm_x)
    print(f"{'':30} {'dlcli ms':>9} {'torch ms':>9} {'ratio':>6}   ({ARGS.threads} threads, median of {ARGS.steps})")
    for name, ms in ours.items():
        other = theirs.get(name)
        ratio = f"{ms / other:6.2f}" if other else ""
        print(f"{name:30} {ms:9.3f} {other if other else float('nan'):9.3f} {ratio}")


if __name__ == "__main__":
    main()
