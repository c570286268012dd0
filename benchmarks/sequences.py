"""Recurrent layers and CTC: dlcli vs PyTorch CPU in one run.

1. Seconds per epoch of Embedding(10000, 32) + {LSTM, SimpleRNN, GRU}(32) + Dense(1, sigmoid) on 25000 random
   sequences of length 500 (batch 128, RMSprop, binary crossentropy): `dlcli train` on a generated .npz vs the
   same model in PyTorch, alternating, `--repeats` times each (median).
2. CTC loss forward + backward for batch 64, T 35, 11 classes, labels of 1-5: dlcli's op vs
   torch.nn.functional.ctc_loss (median of 50 after warm-up).

    python benchmarks/sequences.py [--repeats 2] [--samples 25000] [--json out.json]
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
from pathlib import Path
from typing import Any


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=25000)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--cells", default="lstm,simple_rnn,gru")
    parser.add_argument("--json", type=str, default=None)
    return parser.parse_args()


ARGS = _parse()
THREAD_VARS = {v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}
os.environ.update(THREAD_VARS)

import numpy as np  # noqa: E402

SPEC = """
name = "seq-{cell}"
seed = 1
[data]
train = "{data}"
[model]
input = {{ shape = [{length}], dtype = "int32" }}
[[model.layers]]
type = "embedding"
input_dim = 10000
output_dim = 32
[[model.layers]]
type = "{cell}"
units = 32
[[model.layers]]
type = "dense"
units = 1
activation = "sigmoid"
[train]
loss = "binary_crossentropy"
optimizer = "rmsprop"
metrics = ["accuracy"]
epochs = 1
batch_size = 128
"""

TORCH_EPOCH = r'''
import json, sys, time
import numpy as np, torch
threads, cell, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(threads); torch.manual_seed(1)
d = np.load(path)
x, y = torch.from_numpy(d["x"].astype(np.int64)), torch.from_numpy(d["y"].astype(np.float32))[:, None]
class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(10000, 32)
        self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[cell](32, 32, batch_first=True)
        self.dense = torch.nn.Linear(32, 1)
    def forward(self, ids):
        out, _ = self.rnn(self.embedding(ids))
        return self.dense(out[:, -1])
model = Model()
opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
loss_fn = torch.nn.BCEWithLogitsLoss()
start = time.perf_counter()
order = torch.randperm(len(x))
for i in range(0, len(x), 128):
    idx = order[i:i + 128]
    opt.zero_grad(); loss = loss_fn(model(x[idx]), y[idx]); loss.backward(); opt.step()
print(json.dumps({"seconds": time.perf_counter() - start}))
'''


def dlcli_epoch(cell: str, data: Path, workdir: Path, env: dict[str, str]) -> float:
    spec = workdir / f"{cell}-{data.stem}.toml"
    spec.write_text(SPEC.format(cell=cell, data=data, length=ARGS.length))
    out = subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--json", "--run-dir",
                          str(workdir / f"run-{cell}-{time.monotonic_ns()}")], env=env, cwd=workdir,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dlcli train ({cell}) failed:\n{out.stderr}")
    return next(json.loads(line)["seconds"] for line in out.stdout.splitlines() if '"event": "epoch"' in line)


def torch_epoch(cell: str, data: Path, workdir: Path, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", TORCH_EPOCH, str(ARGS.threads), cell, str(data)], env=env,
                         cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the PyTorch run ({cell}) failed:\n{out.stderr}")
    return json.loads(out.stdout)["seconds"]


def ctc_times() -> dict[str, float]:
    """Median ms of CTC forward + backward, dlcli's op vs torch's, batch 64, T 35, 11 classes."""
    import torch

    from dlcli.losses import create_loss
    from dlcli.tensor import Tensor

    torch.set_num_threads(ARGS.threads)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 35, 11)).astype(np.float32)
    lengths = rng.integers(1, 6, 64)
    labels = np.full((64, 5), -1, np.int64)
    for i, n in enumerate(lengths):
        labels[i, :n] = rng.integers(0, 10, n)
    loss_fn = create_loss({"type": "ctc", "from_logits": True})

    def ours() -> None:
        z = Tensor(logits.copy(), requires_grad=True)
        loss_fn(z, labels).backward()

    flat = torch.from_numpy(labels[labels >= 0])
    t_lengths, in_lengths = torch.from_numpy(lengths), torch.full((64,), 35, dtype=torch.long)

    def theirs() -> None:
        z = torch.from_numpy(logits).requires_grad_(True)
        log_probs = torch.log_softmax(z, -1).transpose(0, 1)
        torch.nn.functional.ctc_loss(log_probs, flat, in_lengths, t_lengths, blank=10, reduction="sum").backward()

    result = {}
    for name, fn in (("dlcli_ms", ours), ("torch_ms", theirs)):
        for _ in range(10):
            fn()
        times = []
        for _ in range(50):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        result[name] = statistics.median(times)
    result["ratio"] = result["dlcli_ms"] / result["torch_ms"]
    return result


def main() -> int:
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rng = np.random.default_rng(0)
        data = workdir / "random_sequences.npz"
        np.savez(data, x=rng.integers(1, 10000, (ARGS.samples, ARGS.length)).astype(np.int32),
                 y=rng.integers(0, 2, ARGS.samples).astype(np.float32))
        # an untimed epoch over a few batches first, so every timed epoch finds the Numba cache warm (a cold
        # compile, several seconds, would otherwise land in the first one)
        warmup = workdir / "warmup.npz"
        np.savez(warmup, x=rng.integers(1, 10000, (256, ARGS.length)).astype(np.int32),
                 y=rng.integers(0, 2, 256).astype(np.float32))
        env = {**os.environ, **THREAD_VARS, "CI": "1", "NUMBA_CACHE_DIR": str(workdir / "numba-cache")}
        for cell in ARGS.cells.split(","):
            ours, theirs = [], []
            dlcli_epoch(cell, warmup, workdir, env)
            for _ in range(ARGS.repeats):
                ours.append(dlcli_epoch(cell, data, workdir, env))
                theirs.append(torch_epoch(cell, data, workdir, env))
            rows[cell] = {"dlcli_s": statistics.median(ours), "torch_s": statistics.median(theirs),
                          "ratio": statistics.median(ours) / statistics.median(theirs), "dlcli_runs": ours,
                          "torch_runs": theirs}
    ctc = ctc_times()
    print(f"Embedding(10000, 32) + RNN(32) + Dense(1): seconds per epoch, {ARGS.samples} sequences of length "
          f"{ARGS.length}, batch 128, threads={ARGS.threads}, median of {ARGS.repeats} (the first epoch, "
          "Numba cache warm)")
    print("| layer | dlcli s/epoch | PyTorch s/epoch | ratio |")
    print("|---|---|---|---|")
    for cell, row in rows.items():
        print(f"| {cell} | {row['dlcli_s']:.2f} | {row['torch_s']:.2f} | {row['ratio']:.2f} |")
    print(f"| ctc loss+grad (64 x 35 x 11), ms | {ctc['dlcli_ms']:.3f} | {ctc['torch_ms']:.3f} | {ctc['ratio']:.2f} |")
    if ARGS.json:
        Path(ARGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.json).write_text(json.dumps({"benchmark": "sequences", "rows": rows, "ctc": ctc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
