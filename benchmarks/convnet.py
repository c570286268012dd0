"""The ch. 8 MNIST convnet: dlcli vs PyTorch CPU in one run — seconds per epoch, and a per-layer table.

Epochs run through `dlcli train specs/mnist_convnet.toml` and through the same model in PyTorch (NCHW,
torch.nn.functional ops, RMSprop with Keras' settings), alternating, on the same 60k images, batch 64.
The per-layer table times each layer's forward and backward on one batch of 64 (median of --steps
steps): dlcli with `dlcli profile`'s instrumentation (each op's backward timed and added to the node that made
it), PyTorch by module hooks.
`--accuracy` also trains the 5 epochs of the spec and reports test accuracy (the goal is >= 99.0%).

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/convnet.py [--repeats 3] [--accuracy] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="one-epoch runs of each framework (alternating)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps for the per-layer table")
    parser.add_argument("--accuracy", action="store_true", help="also train 5 epochs and report test accuracy")
    parser.add_argument("--layers-only", action="store_true", help="only the per-layer table (no epochs)")
    parser.add_argument("--conv-algorithm", choices=["im2col", "winograd", "winograd_3x3", "winograd_4x4", "auto"],
                        default=None, help="set every conv2d layer's algorithm (default: the spec's, auto)")
    parser.add_argument("--json", type=str, default=None)
    return parser.parse_args()


ARGS = _parse()
THREAD_VARS = {v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}
os.environ.update(THREAD_VARS)

import dlcli  # noqa: E402, F401 - before NumPy: sets OPENBLAS_THREAD_TIMEOUT, as `dlcli train` has it
import numpy as np  # noqa: E402

TORCH_EPOCH = r'''
import json, sys, time
import numpy as np, torch
import torch.nn.functional as F
from dlcli.data import load_dataset
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(1337)
epochs = int(sys.argv[2])
d = load_dataset("mnist")
x = torch.from_numpy(d.x_train[:, None].astype(np.float32) / 255.0); y = torch.from_numpy(d.y_train.astype(np.int64))
xs = torch.from_numpy(d.x_test[:, None].astype(np.float32) / 255.0); ys = torch.from_numpy(d.y_test.astype(np.int64))
model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(64, 128, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(1152, 10))
opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
times = []
for _ in range(epochs):
    start = time.perf_counter()
    order = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        idx = order[i:i + 64]
        opt.zero_grad(); loss = F.cross_entropy(model(x[idx]), y[idx]); loss.backward(); opt.step()
    times.append(time.perf_counter() - start)
with torch.no_grad():
    acc = float(sum((model(xs[i:i + 1000]).argmax(1) == ys[i:i + 1000]).sum() for i in range(0, 10000, 1000)) / 10000)
print(json.dumps({"epoch_seconds": times, "test_accuracy": acc}))
'''


def spec_overrides() -> list[str]:
    """--set overrides giving every conv2d layer of the spec --conv-algorithm (none without it)."""
    if ARGS.conv_algorithm is None:
        return []
    layers = tomllib.loads((REPO / "specs" / "mnist_convnet.toml").read_text())["model"]["layers"]
    return [f'model.layers[{i}].algorithm="{ARGS.conv_algorithm}"' for i, layer in enumerate(layers)
            if layer["type"] == "conv2d"]


def dlcli_epochs(env: dict[str, str], workdir: Path, epochs: int) -> dict[str, Any]:
    """Train the spec for `epochs` through the CLI; epoch seconds from its JSON events, and test accuracy."""
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    out = subprocess.run([sys.executable, "-m", "dlcli", "train", str(REPO / "specs" / "mnist_convnet.toml"),
                          "--json", "--run-dir", str(run_dir), "--set", f"train.epochs={epochs}",
                          *[arg for override in spec_overrides() for arg in ("--set", override)]],
                         env=env, cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dlcli train failed:\n{out.stderr}")
    seconds = [json.loads(line)["seconds"] for line in out.stdout.splitlines() if '"event": "epoch"' in line]
    evaluated = subprocess.run([sys.executable, "-m", "dlcli", "eval", str(run_dir), "--checkpoint", "last", "--json"],
                               env=env, cwd=workdir, capture_output=True, text=True, check=True)
    return {"epoch_seconds": seconds, "test_accuracy": json.loads(evaluated.stdout)["accuracy"]}


def torch_epochs(env: dict[str, str], workdir: Path, epochs: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", TORCH_EPOCH, str(ARGS.threads), str(epochs)], env=env, cwd=workdir,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the PyTorch run failed:\n{out.stderr}")
    return json.loads(out.stdout)


def dlcli_layer_times() -> dict[str, dict[str, float]]:
    """Forward and backward milliseconds per layer of the spec's model, batch 64, in this process: `dlcli
    profile`'s own instrumentation (dlcli/tensor/profile.py) on one random batch, median of --steps steps."""
    from dlcli.graph import build_model
    from dlcli.optimizers import create_optimizer
    from dlcli.spec.load import load_spec
    from dlcli.train.loop import Objective, Split
    from dlcli.train.profile import profile_training, report

    spec = load_spec(REPO / "specs" / "mnist_convnet.toml", spec_overrides())
    model = build_model(spec.model, np.random.default_rng(0), spec)
    optimizer = create_optimizer(spec.train.optimizer.model_dump(), model.parameters())
    rng = np.random.default_rng(0)
    batch = Split({next(iter(model.inputs)): rng.integers(0, 256, (64, 28, 28)).astype(np.float32)},
                  {next(iter(model.outputs)): rng.integers(0, 10, 64)})
    measured = profile_training(model, Objective(model), optimizer, batch, 64, ARGS.steps, 3, rng)
    result = report(measured, spec.name, 64, ARGS.steps, 3)
    rows = {n["node"]: {"forward": n["forward_ms"], "backward": n["backward_ms"]} for n in result["nodes"]}
    phases = result["phases"]
    rows["loss"] = {"forward": phases["loss"], "backward": phases["loss backward"]}
    rows["optimizer"] = {"forward": phases["optimizer"], "backward": 0.0}
    rows["outside the layers"] = {"forward": phases["data"] + phases["metrics"] + phases["other"], "backward": 0.0}
    return rows


def torch_layer_times() -> dict[str, dict[str, float]]:
    """The same per-layer times for the PyTorch model, from forward and backward module hooks."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    names = ["conv2d", "relu", "max_pooling2d", "conv2d_1", "relu_1", "max_pooling2d_1", "conv2d_2", "relu_2",
             "flatten", "dense"]
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(64, 128, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(1152, 10))
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    marks: dict[str, float] = {}
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for name, module in zip(names, model):
        module.register_forward_pre_hook(lambda m, i, n=name: marks.__setitem__(f"f{n}", time.perf_counter()))
        module.register_forward_hook(lambda m, i, o, n=name: times[n].__setitem__(
            "forward", (time.perf_counter() - marks[f"f{n}"]) * 1e3))
        module.register_full_backward_pre_hook(lambda m, g, n=name: marks.__setitem__(f"b{n}", time.perf_counter()))
        module.register_full_backward_hook(lambda m, gi, go, n=name: times[n].__setitem__(
            "backward", (time.perf_counter() - marks[f"b{n}"]) * 1e3))
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"forward": [], "backward": []})
    for step in range(ARGS.steps + 3):
        times.clear()
        opt.zero_grad()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        step_start = time.perf_counter()
        opt.step()
        optimizer_ms = (time.perf_counter() - step_start) * 1e3
        if step >= 3:
            for name in names:
                rows[name]["forward"].append(times[name].get("forward", 0.0))
                rows[name]["backward"].append(times[name].get("backward", 0.0))
            rows["optimizer"]["forward"].append(optimizer_ms)
            rows["optimizer"]["backward"].append(0.0)
    return {name: {k: statistics.median(v) for k, v in r.items()} for name, r in rows.items()}


def main() -> int:
    if not os.environ.get("DLCLI_DATASETS_MIRROR") and not os.environ.get("DLCLI_CACHE"):
        print("set DLCLI_DATASETS_MIRROR (e.g. ../shared/datasets) or a DLCLI_CACHE holding MNIST", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"benchmark": "convnet", "threads": ARGS.threads, "repeats": ARGS.repeats,
                              "conv_algorithm": ARGS.conv_algorithm or "the spec's (auto)"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not ARGS.layers_only:
            _epochs(result, workdir)
    result["layers_dlcli_ms"] = dlcli_layer_times()
    result["layers_torch_ms"] = torch_layer_times()
    _print(result)
    if ARGS.json:
        Path(ARGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.json).write_text(json.dumps(result, indent=2))
    return 0


def _epochs(result: dict[str, Any], workdir: Path) -> None:
    """Seconds per epoch of both, alternating, and with --accuracy the 5-epoch test accuracies."""
    env = {**os.environ, **THREAD_VARS, "CI": "1", "NUMBA_CACHE_DIR": str(workdir / "numba-cache")}
    # compile into the fresh cache first: the first timed epoch would otherwise count seconds of compiling
    subprocess.run([sys.executable, "-m", "dlcli", "warmup", str(REPO / "specs" / "mnist_convnet.toml"),
                    *[arg for override in spec_overrides() for arg in ("--set", override)]], env=env,
                   cwd=workdir, capture_output=True, check=True)
    dl, pt = [], []
    for _ in range(ARGS.repeats):
        dl.append(dlcli_epochs(env, workdir, 1))
        pt.append(torch_epochs(env, workdir, 1))
    result["dlcli_seconds_per_epoch"] = statistics.median(r["epoch_seconds"][0] for r in dl)
    result["torch_seconds_per_epoch"] = statistics.median(r["epoch_seconds"][0] for r in pt)
    result["ratio_dlcli_over_torch"] = result["dlcli_seconds_per_epoch"] / result["torch_seconds_per_epoch"]
    if ARGS.accuracy:
        full = dlcli_epochs(env, workdir, 5)
        reference = torch_epochs(env, workdir, 5)
        result.update(dlcli_test_accuracy_5_epochs=full["test_accuracy"],
                      torch_test_accuracy_5_epochs=reference["test_accuracy"],
                      dlcli_epoch_seconds_5_epochs=full["epoch_seconds"])


def _print(r: dict[str, Any]) -> None:
    if "ratio_dlcli_over_torch" in r:
        _print_epochs(r)
    _print_layers(r)


def _print_epochs(r: dict[str, Any]) -> None:
    print(f"MNIST convnet (ch. 8), batch 64, threads={r['threads']}: seconds per epoch (60k images), median of "
          f"{r['repeats']}: dlcli {r['dlcli_seconds_per_epoch']:.2f}, PyTorch {r['torch_seconds_per_epoch']:.2f}, "
          f"ratio {r['ratio_dlcli_over_torch']:.2f}"
          + (f"; 5-epoch test accuracy dlcli {r['dlcli_test_accuracy_5_epochs'] * 100:.2f}%, PyTorch "
             f"{r['torch_test_accuracy_5_epochs'] * 100:.2f}%" if "dlcli_test_accuracy_5_epochs" in r else ""))


def _print_layers(r: dict[str, Any]) -> None:
    print("| layer | dlcli fwd ms | dlcli bwd ms | torch fwd ms | torch bwd ms |")
    print("|---|---|---|---|---|")
    dl, pt = r["layers_dlcli_ms"], r["layers_torch_ms"]
    # PyTorch's model has separate ReLU modules; dlcli fuses relu into the conv op: add them to their conv
    merged_pt = {k: dict(v) for k, v in pt.items() if not k.startswith("relu")}
    for relu, conv in (("relu", "conv2d"), ("relu_1", "conv2d_1"), ("relu_2", "conv2d_2")):
        for part in ("forward", "backward"):
            merged_pt[conv][part] += pt[relu][part]
    names = list(dict.fromkeys([*dl, *merged_pt]))
    totals = [0.0, 0.0, 0.0, 0.0]
    for name in names:
        cells = [dl.get(name, {}).get("forward"), dl.get(name, {}).get("backward"),
                 merged_pt.get(name, {}).get("forward"), merged_pt.get(name, {}).get("backward")]
        totals = [t + (c or 0.0) for t, c in zip(totals, cells)]
        print(f"| {name} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    print("| total | " + " | ".join(f"{t:.2f}" for t in totals) + " |")


if __name__ == "__main__":
    sys.exit(main())
