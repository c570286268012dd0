"""The ch. 2 MNIST MLP trained through `dlcli train` against the same model in PyTorch CPU, in one run.

Reports test accuracy, seconds per epoch (median over epochs and repeats; validation included in both),
peak memory, the ratio of epoch times, `dlcli --help` wall time, and the first-epoch overhead with a
warm Numba cache (first epoch minus the median of the others, on a run after the cache was filled).

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/mnist_mlp.py [--repeats 3] [--json out.json]
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

REPO = Path(__file__).resolve().parents[1]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="training runs of each framework (alternating)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    parser.add_argument("--no-torch", action="store_true")
    return parser.parse_args()


ARGS = _parse()
THREAD_VARS = {v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}
os.environ.update(THREAD_VARS)


def dlcli_run(workdir: Path, env: dict[str, str]) -> dict:
    """One `dlcli train` of the spec, then `dlcli eval`: epoch times, accuracy, peak memory."""
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "dlcli", "train", str(REPO / "specs" / "mnist_mlp.toml"), "--json",
           "--run-dir", str(run_dir), "--set", f"train.epochs={ARGS.epochs}"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, _, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    wall = time.perf_counter() - start
    if not out or '"event": "end"' not in out:
        raise SystemExit(f"dlcli train failed:\n{err}")
    epochs = [json.loads(line)["seconds"] for line in out.splitlines() if json.loads(line)["event"] == "epoch"]
    evaluated = subprocess.run([sys.executable, "-m", "dlcli", "eval", str(run_dir), "--checkpoint", "last",
                                "--json"], env=env, cwd=workdir, capture_output=True, text=True, check=True)
    return {"epoch_seconds": epochs, "test_accuracy": json.loads(evaluated.stdout)["accuracy"], "wall_seconds": wall,
            "peak_rss_mib": usage.ru_maxrss / 1024}


TORCH_SCRIPT = r'''
import json, sys, time, resource
import numpy as np, torch
from dlcli.data import load_dataset, split_validation
threads, epochs = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(1337)
d = load_dataset("mnist")
rng = np.random.default_rng(1337)
train, val = split_validation({"x": d.x_train, "y": d.y_train}, 0.1, rng)
def tensors(x, y):
    return torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))
xt, yt = tensors(train["x"], train["y"]); xv, yv = tensors(val["x"], val["y"]); xs, ys = tensors(d.x_test, d.y_test)
model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)  # Keras' RMSprop defaults
loss_fn = torch.nn.CrossEntropyLoss()
times = []
for epoch in range(epochs):
    start = time.perf_counter()
    order = torch.randperm(len(xt))
    model.train()
    for i in range(0, len(xt), 128):
        idx = order[i:i + 128]
        opt.zero_grad()
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for i in range(0, len(xv), 128):
            loss_fn(model(xv[i:i + 128]), yv[i:i + 128])
    times.append(time.perf_counter() - start)
with torch.no_grad():
    accuracy = float((model(xs).argmax(1) == ys).float().mean())
print(json.dumps({"epoch_seconds": times, "test_accuracy": accuracy,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def torch_run(env: dict[str, str], workdir: Path) -> dict:
    """The same model, data split, batch size and optimizer settings in PyTorch, in a child process."""
    proc = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, str(ARGS.threads), str(ARGS.epochs)], env=env,
                          cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the PyTorch run failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def help_seconds(env: dict[str, str], workdir: Path, repeats: int = 7) -> float:
    """Median wall time of `dlcli --help` (the console script, as a user runs it)."""
    exe = Path(sys.executable).with_name("dlcli")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(exe), "--help"], env=env, cwd=workdir, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    if not os.environ.get("DLCLI_DATASETS_MIRROR") and not os.environ.get("DLCLI_CACHE"):
        print("set DLCLI_DATASETS_MIRROR (e.g. ../shared/datasets) or a DLCLI_CACHE holding MNIST", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = {**os.environ, **THREAD_VARS, "CI": "1", "NUMBA_CACHE_DIR": str(workdir / "numba-cache")}
        cold = dlcli_run(workdir, env)  # fills the Numba cache
        dl_runs, torch_runs = [], []
        for _ in range(ARGS.repeats):
            dl_runs.append(dlcli_run(workdir, env))
            if not ARGS.no_torch:
                torch_runs.append(torch_run(env, workdir))
        help_time = help_seconds(env, workdir)

    def per_epoch(runs: list[dict]) -> float:
        return statistics.median(t for r in runs for t in r["epoch_seconds"][1:])

    def first_overhead(runs: list[dict]) -> float:
        return statistics.median(r["epoch_seconds"][0] - statistics.median(r["epoch_seconds"][1:]) for r in runs)

    row = {"epochs": ARGS.epochs, "threads": ARGS.threads, "repeats": ARGS.repeats,
           "dlcli_seconds_per_epoch": per_epoch(dl_runs),
           "dlcli_test_accuracy": [r["test_accuracy"] for r in dl_runs],
           "dlcli_peak_rss_mib": max(r["peak_rss_mib"] for r in dl_runs),
           "dlcli_first_epoch_overhead_s_warm_cache": first_overhead(dl_runs),
           "dlcli_first_epoch_overhead_s_cold_cache": cold["epoch_seconds"][0] - statistics.median(
               cold["epoch_seconds"][1:]),
           "dlcli_help_seconds": help_time}
    if torch_runs:
        row.update({"torch_seconds_per_epoch": per_epoch(torch_runs),
                    "torch_test_accuracy": [r["test_accuracy"] for r in torch_runs],
                    "torch_peak_rss_mib": max(r["peak_rss_mib"] for r in torch_runs),
                    "ratio_dlcli_over_torch": per_epoch(dl_runs) / per_epoch(torch_runs)})
    _print(row)
    if ARGS.json:
        Path(ARGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.json).write_text(json.dumps({"benchmark": "mnist_mlp", "python": platform.python_version(),
                                               "row": row, "dlcli_runs": dl_runs, "torch_runs": torch_runs},
                                              indent=2))
    return 0


def _print(row: dict) -> None:
    acc = lambda xs: f"{statistics.median(xs) * 100:.2f}% ({min(xs) * 100:.2f}-{max(xs) * 100:.2f})"  # noqa: E731
    print(f"MNIST MLP (784-512-10, RMSprop, batch 128, {row['epochs']} epochs, 54k train + 6k validation), "
          f"threads={row['threads']}, {row['repeats']} runs each")
    print("| metric | dlcli | PyTorch |")
    print("|---|---|---|")
    t = row.get("torch_seconds_per_epoch")
    print(f"| seconds per epoch (median, epochs 2..) | {row['dlcli_seconds_per_epoch']:.3f} | "
          f"{t:.3f} |" if t else f"| seconds per epoch | {row['dlcli_seconds_per_epoch']:.3f} | - |")
    if t:
        print(f"| ratio dlcli / PyTorch | {row['ratio_dlcli_over_torch']:.2f} | |")
    print(f"| test accuracy | {acc(row['dlcli_test_accuracy'])} | "
          f"{acc(row['torch_test_accuracy']) if t else '-'} |")
    print(f"| peak memory (MiB) | {row['dlcli_peak_rss_mib']:.0f} | "
          f"{row['torch_peak_rss_mib']:.0f} |" if t else f"| peak memory (MiB) | {row['dlcli_peak_rss_mib']:.0f} | - |")
    print(f"| first-epoch overhead, warm Numba cache (s) | {row['dlcli_first_epoch_overhead_s_warm_cache']:.3f} | |")
    print(f"| first-epoch overhead, cold Numba cache (s) | {row['dlcli_first_epoch_overhead_s_cold_cache']:.3f} | |")
    print(f"| dlcli --help wall time (s) | {row['dlcli_help_seconds']:.3f} | |")


if __name__ == "__main__":
    sys.exit(main())
