"""The whole training loop of a tiny tabular model, as `dlcli train` runs it, against a hand-written NumPy loop.

`benchmarks/mlp_step.py` times the step alone (forward, loss, backward, update). A user's epoch also gathers
each shuffled batch, checks the loss, updates the metrics and calls the callbacks: this times that, as a user
sees it, from the epoch times `dlcli train --json` reports. The model is the tiny MLP of mlp_step.py (20 -> 16
relu -> 1 sigmoid, binary crossentropy, RMSprop, accuracy, batch 32) on 64000 synthetic rows, 2000 steps an
epoch, no validation. The NumPy loop does the same work by hand in this process: a permutation, the gathers,
the step (with a preallocated RMSprop), the loss value and the accuracy counts.

Each repeat runs `dlcli train` once per checkout (epochs after the first; median per run) and the NumPy loop
for as many epochs, alternating, so that all see the same load; the table gives medians over repeats.
"dlcli/numpy" is the figure to compare across machines: both are mostly per-call overhead.

    python benchmarks/tabular_loop.py [--repeats 5] [--epochs 4] [--base PATH] [--repo PATH] [--json out.json]

--repo runs the dlcli of another checkout (PYTHONPATH=PATH; default this one); --base PATH measures that
checkout too, alternating with --repo's in every repeat: one row each, the base's first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy_mlp import backward, forward, rmsprop_update

REPO = Path(__file__).resolve().parents[1]
ROWS, FEATURES, HIDDEN, BATCH = 64000, 20, 16, 32
RMSPROP = {"learning_rate": 1e-3, "rho": 0.9, "epsilon": 1e-7}  # Keras' defaults, as the spec's rmsprop

SPEC = f"""name = "tabular-loop"
seed = 1
[data]
train = "tab.npz"
[model]
input = {{ shape = [{FEATURES}] }}
[[model.layers]]
type = "dense"
units = {HIDDEN}
activation = "relu"
[[model.layers]]
type = "dense"
units = 1
activation = "sigmoid"
[train]
loss = "binary_crossentropy"
optimizer = {{ type = "rmsprop" }}
metrics = ["accuracy"]
batch_size = {BATCH}
"""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="dlcli runs per checkout (alternating)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is not counted")
    parser.add_argument("--repo", type=Path, default=REPO, help="the dlcli checkout to run (default: this one)")
    parser.add_argument("--base", type=Path, default=None, help="another checkout, measured alternately")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    return parser.parse_args()


def write_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a noisy linear rule: the loss falls, the accuracy climbs, as on real data."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, FEATURES), dtype=np.float32)
    y = ((x @ rng.standard_normal(FEATURES) + 0.5 * rng.standard_normal(ROWS)) > 0).astype(np.float32)
    np.savez(path, x=x, y=y)
    return x, y


def dlcli_step_us(repo: Path, workdir: Path, epochs: int, env: dict[str, str]) -> float:
    """One `dlcli train` run: the median of its epochs after the first, in microseconds per step."""
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "dlcli", "train", "spec.toml", "--json", "--run-dir", str(run_dir),
           "--set", f"train.epochs={epochs}"]
    done = subprocess.run(cmd, cwd=workdir, env={**env, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dlcli train failed ({repo}):\n{done.stderr}")
    events = [json.loads(line) for line in done.stdout.splitlines()]
    seconds = [e["seconds"] for e in events if e["event"] == "epoch"]
    return statistics.median(seconds[1:] or seconds) / (ROWS // BATCH) * 1e6


def numpy_epoch_us(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, state: list[np.ndarray]) -> float:
    """One epoch of the hand-written loop, in microseconds per step."""
    w1, b1, w2, b2 = state[:4]
    params, grads, velocities, scratch = state[:4], state[4:8], state[8:12], state[12:16]
    lr, rho, eps = RMSPROP["learning_rate"], RMSPROP["rho"], RMSPROP["epsilon"]
    start = time.perf_counter()
    order = rng.permutation(ROWS)
    loss_total = hits = 0.0
    for first in range(0, ROWS, BATCH):
        index = order[first:first + BATCH]
        xb, yb = x[index], y[index].reshape(-1, 1)
        h, z = forward(xb, w1, b1, w2, b2)
        p = 1 / (1 + np.exp(-z))
        loss_total += float(np.mean(np.logaddexp(0, z) - yb * z))  # the loss from logits, as Keras reports it
        d = p - yb
        d /= len(index)
        backward(xb, h, w2, d, grads)
        rmsprop_update(params, grads, velocities, scratch, lr, rho, eps)
        hits += int(np.count_nonzero((p > 0.5) == (yb > 0.5)))
    return (time.perf_counter() - start) / (ROWS // BATCH) * 1e6


def numpy_state() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    params = [rng.uniform(-0.3, 0.3, (FEATURES, HIDDEN)).astype(np.float32), np.zeros(HIDDEN, np.float32),
              rng.uniform(-0.3, 0.3, (HIDDEN, 1)).astype(np.float32), np.zeros(1, np.float32)]
    return [*params, *(np.empty_like(p) for p in params), *(np.zeros_like(p) for p in params),
            *(np.empty_like(p) for p in params)]


def main() -> None:
    args = _parse()
    repos = [args.repo.resolve()] if args.base is None else [args.base.resolve(), args.repo.resolve()]
    env = {**os.environ, **{v: "2" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "spec.toml").write_text(SPEC)
        x, y = write_data(workdir / "tab.npz")
        for repo in repos:  # fills each checkout's kernel cache: not timed
            dlcli_step_us(repo, workdir, 1, env)
        dlcli: list[list[float]] = [[] for _ in repos]
        numpy: list[float] = []
        for repeat in range(args.repeats):
            for i, repo in enumerate(repos):
                dlcli[i].append(dlcli_step_us(repo, workdir, args.epochs, env))
            # like a dlcli run: fresh weights, the epochs after the first. Weights trained on across repeats
            # saturate the logits, and the update then works on subnormal floats, several times slower
            rng, state = np.random.default_rng(repeat), numpy_state()
            epochs = [numpy_epoch_us(x, y, rng, state) for _ in range(args.epochs)]
            numpy.append(statistics.median(epochs[1:] or epochs))
    reference = statistics.median(numpy)
    rows = [{"repo": str(repo), "dlcli_us_per_step": statistics.median(times), "numpy_us_per_step": reference,
             "ratio_dlcli_over_numpy": statistics.median(times) / reference, "dlcli_runs_us": times}
            for repo, times in zip(repos, dlcli)]
    print(f"tiny tabular loop (20-16-1, batch {BATCH}, {ROWS // BATCH} steps an epoch), median of {args.repeats}")
    print(f"{'checkout':40s} {'dlcli us/step':>14s} {'numpy us/step':>14s} {'dlcli/numpy':>12s}")
    for row in rows:
        print(f"{row['repo'][-40:]:40s} {row['dlcli_us_per_step']:14.1f} {row['numpy_us_per_step']:14.1f} "
              f"{row['ratio_dlcli_over_numpy']:12.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "tabular_loop", "machine": platform.machine(),
                                               "python": platform.python_version(), "repeats": args.repeats,
                                               "epochs": args.epochs, "numpy_runs_us": numpy, "rows": rows},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
