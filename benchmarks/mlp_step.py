"""One training step of an MLP (forward, loss, backward, RMSprop update): dlcli vs PyTorch CPU vs plain NumPy.

Workloads: the MNIST MLP of Deep Learning with Python ch. 2 (784 -> Dense(512, relu) -> Dense(10, softmax),
sparse categorical crossentropy, batch 128) and a tiny MLP (20 -> 16 relu -> 1 sigmoid, binary
crossentropy, batch 32) whose step is almost all per-op overhead. Every implementation runs in this
process with the same thread count; each is timed step by step in `--rounds` rounds of `--steps` steps
after warm-up (rounds alternate between implementations), and the table gives the median over rounds
of each round's median.

"dlcli/numpy" is the figure to compare across machines for the tiny MLP: its step is Python overhead, so its
microseconds follow the machine (45 us on one where PyTorch's step took 160, 120-131 on one where PyTorch's took
550 and the NumPy step 63, as BASELINES.md's machine), while the hand-written NumPy step, measured in the same
rounds, moves with it.

    python benchmarks/mlp_step.py [--threads 2] [--steps 30] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round (at least 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the table gives their median")
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps before the first round")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch (when it is not installed)")
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before NumPy loads, so every pool has the same size

import numpy as np  # noqa: E402
from numpy_mlp import backward, forward, rmsprop_update  # noqa: E402

from dlcli.layers import create_layer  # noqa: E402
from dlcli.losses import create_loss  # noqa: E402
from dlcli.optimizers import create_optimizer  # noqa: E402
from dlcli.tensor import Tensor  # noqa: E402

WORKLOADS = {
    "mnist_mlp": {"sizes": (784, 512, 10), "activations": ("relu", "softmax"),
                  "loss": "sparse_categorical_crossentropy", "batch": 128},
    "tiny_mlp": {"sizes": (20, 16, 1), "activations": ("relu", "sigmoid"), "loss": "binary_crossentropy",
                 "batch": 32},
}
RMSPROP = {"learning_rate": 1e-3, "rho": 0.9, "epsilon": 1e-7}  # Keras' defaults


def _data(workload: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    inputs, _, outputs = workload["sizes"]
    x = rng.random((workload["batch"], inputs), dtype=np.float32)
    if outputs == 1:
        return x, rng.integers(0, 2, (workload["batch"], 1)).astype(np.float32)
    return x, rng.integers(0, outputs, workload["batch"])


def dlcli_step(workload: dict) -> Callable[[], None]:
    """The step on dlcli's tensor core, as the train loop will run it."""
    rng = np.random.default_rng(0)
    shape: tuple[int, ...] = (workload["sizes"][0],)
    layers = []
    for i, (units, activation) in enumerate(zip(workload["sizes"][1:], workload["activations"])):
        layer = create_layer({"type": "dense", "units": units, "activation": activation, "name": f"dense_{i}"})
        shape = layer.build(shape, rng)
        layers.append(layer)
    params = {name: t for layer in layers for name, t in layer.weights().items()}
    optimizer = create_optimizer({"type": "rmsprop", **RMSPROP}, params)
    loss_fn = create_loss(workload["loss"])
    x, y = _data(workload)

    def step() -> None:
        out = Tensor(x)
        for layer in layers:
            out = layer(out, training=True)
        loss = loss_fn(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def torch_step(workload: dict) -> Callable[[], None]:
    """The same step in PyTorch: Linear layers, a loss on logits, torch.optim.RMSprop with Keras' settings."""
    import torch

    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    inputs, hidden, outputs = workload["sizes"]
    model = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, outputs))
    optimizer = torch.optim.RMSprop(model.parameters(), lr=RMSPROP["learning_rate"], alpha=RMSPROP["rho"],
                                    eps=RMSPROP["epsilon"])
    loss_fn = torch.nn.BCEWithLogitsLoss() if outputs == 1 else torch.nn.CrossEntropyLoss()
    x_np, y_np = _data(workload)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def step() -> None:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def numpy_step(workload: dict) -> Callable[[], None]:
    """A hand-written vectorized NumPy step (no autodiff): the floor an interpreter-level framework can reach.

    Gradients and the RMSprop update go into preallocated buffers: with fresh temporaries, glibc hands
    out large blocks as new zeroed pages or recycled heap depending on history, and the step time
    moved between 2.2 and 5.5 ms from run to run.
    """
    rng = np.random.default_rng(0)
    inputs, hidden, outputs = workload["sizes"]
    w1 = rng.uniform(-0.05, 0.05, (inputs, hidden)).astype(np.float32)
    w2 = rng.uniform(-0.05, 0.05, (hidden, outputs)).astype(np.float32)
    b1, b2 = np.zeros(hidden, np.float32), np.zeros(outputs, np.float32)
    params = [w1, b1, w2, b2]
    grads = [np.empty_like(p) for p in params]
    velocities = [np.zeros_like(p) for p in params]
    scratch = [np.empty_like(p) for p in params]
    x, y = _data(workload)
    batch = len(x)
    rows = np.arange(batch)
    lr, rho, eps = RMSPROP["learning_rate"], RMSPROP["rho"], RMSPROP["epsilon"]

    def step() -> None:
        h, z = forward(x, w1, b1, w2, b2)
        if outputs == 1:
            d = 1 / (1 + np.exp(-z)) - y
        else:
            z -= z.max(axis=1, keepdims=True)
            d = np.exp(z)
            d /= d.sum(axis=1, keepdims=True)
            d[rows, y] -= 1
        d /= batch
        backward(x, h, w2, d, grads)
        rmsprop_update(params, grads, velocities, scratch, lr, rho, eps)

    return step


def numpy_gemms(workload: dict) -> Callable[[], None]:
    """The step's matrix products alone, in NumPy (OpenBLAS): forward 2, backward 3."""
    rng = np.random.default_rng(0)
    inputs, hidden, outputs = workload["sizes"]
    batch = workload["batch"]
    x = rng.random((batch, inputs), dtype=np.float32)
    w1, w2 = rng.random((inputs, hidden), dtype=np.float32), rng.random((hidden, outputs), dtype=np.float32)
    h, d2 = rng.random((batch, hidden), dtype=np.float32), rng.random((batch, outputs), dtype=np.float32)

    def step() -> None:
        x @ w1
        h @ w2
        h.T @ d2
        d2 @ w2.T
        x.T @ h

    return step


def step_flops(workload: dict) -> int:
    """Floating-point operations of the step's matrix products (2 per multiply-add)."""
    inputs, hidden, outputs = workload["sizes"]
    batch = workload["batch"]
    forward = 2 * batch * (inputs * hidden + hidden * outputs)
    backward = 2 * batch * (inputs * hidden + 2 * hidden * outputs)  # dW1, dW2, dH (no gradient for the input)
    return forward + backward


def measure_interleaved(steps: dict[str, Callable[[], None]]) -> dict[str, dict]:
    """Per implementation: the median over rounds of each round's median step time (seconds).

    Rounds alternate between implementations, so a noisy neighbour slows all of them alike and the
    ratios stay meaningful even when absolute times move.
    """
    for step in steps.values():
        for _ in range(ARGS.warmup):
            step()
    medians: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(ARGS.rounds):
        for name, step in steps.items():
            times = []
            for _ in range(ARGS.steps):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            medians[name].append(statistics.median(times))
    return {name: {"median_s": statistics.median(m), "round_medians_s": m} for name, m in medians.items()}


def main() -> int:
    if ARGS.steps < 20:
        print("--steps must be at least 20", file=sys.stderr)
        return 2
    implementations = {"dlcli": dlcli_step, "numpy": numpy_step, "numpy_gemms_only": numpy_gemms}
    if not ARGS.no_torch:
        import torch

        implementations["torch"] = torch_step
        torch_version = torch.__version__
    else:
        torch_version = None
    rows = []
    for name, workload in WORKLOADS.items():
        times = measure_interleaved({impl: make(workload) for impl, make in implementations.items()})
        flops = step_flops(workload)
        row = {"workload": name, "batch": workload["batch"], "sizes": workload["sizes"],
               **{f"{impl}_us": t["median_s"] * 1e6 for impl, t in times.items()},
               "dlcli_gflops": flops / times["dlcli"]["median_s"] / 1e9,
               "numpy_gemm_gflops": flops / times["numpy_gemms_only"]["median_s"] / 1e9,
               "rounds": {impl: [m * 1e6 for m in t["round_medians_s"]] for impl, t in times.items()}}
        if "torch" in times:
            row["ratio_dlcli_over_torch"] = times["dlcli"]["median_s"] / times["torch"]["median_s"]
        row["ratio_numpy_over_torch"] = (times["numpy"]["median_s"] / times["torch"]["median_s"]
                                         if "torch" in times else None)
        row["ratio_dlcli_over_numpy"] = times["dlcli"]["median_s"] / times["numpy"]["median_s"]
        rows.append(row)
    _print_table(rows)
    if ARGS.json:
        os.makedirs(os.path.dirname(os.path.abspath(ARGS.json)), exist_ok=True)
        with open(ARGS.json, "w") as f:
            json.dump({"benchmark": "mlp_step", "threads": ARGS.threads, "steps": ARGS.steps, "rounds": ARGS.rounds,
                       "numpy": np.__version__, "torch": torch_version, "python": platform.python_version(),
                       "rows": rows}, f, indent=2)
    return 0


def _print_table(rows: list[dict]) -> None:
    header = ("workload", "dlcli", "torch", "dlcli/torch", "numpy", "numpy/torch", "dlcli/numpy", "GEMMs only",
              "dlcli GF/s", "GEMM GF/s")
    print(f"MLP training step, threads={ARGS.threads}, median of {ARGS.rounds} rounds x {ARGS.steps} steps (us)")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        torch_us = r.get("torch_us")
        cells = (r["workload"], f"{r['dlcli_us']:.0f}", f"{torch_us:.0f}" if torch_us else "-",
                 f"{r['ratio_dlcli_over_torch']:.2f}" if torch_us else "-", f"{r['numpy_us']:.0f}",
                 f"{r['ratio_numpy_over_torch']:.2f}" if torch_us else "-", f"{r['ratio_dlcli_over_numpy']:.2f}",
                 f"{r['numpy_gemms_only_us']:.0f}",
                 f"{r['dlcli_gflops']:.1f}", f"{r['numpy_gemm_gflops']:.1f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
