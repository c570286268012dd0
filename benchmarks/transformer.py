"""The ch. 11 Transformer encoder classifier: dlcli vs PyTorch CPU in one run.

1. Seconds per epoch of PositionalEmbedding(20000, 200, 256) + TransformerEncoder(256, dense 32, 2 heads) +
   GlobalMaxPooling1D + Dropout(0.5) + Dense(1, sigmoid) on `--samples` random reviews of 200 ids, each padded
   in front to a random length (RMSprop, binary crossentropy, batch 32): `dlcli train` on a generated .npz vs
   the same model in PyTorch (nn.Embedding, nn.MultiheadAttention with a key padding mask, nn.LayerNorm,
   nn.Linear), alternating, `--repeats` times each (median). Each head is 128 wide (embed_dim / num_heads),
   as nn.MultiheadAttention requires: dlcli's block takes key_dim = 128 (the book's key_dim = 256 would
   give dlcli twice the attention work).
2. Milliseconds per training step of each part, forward and backward on the same shapes (median of
   `--steps`): the attention layer (projections, scores, masked softmax, weighted sum, output projection)
   on the first batch's padding mask, and again with no padding at all (every step valid, no mask: the same
   work in both frameworks, see below), the two layer norms, the dense layers (projection and classifier)
   and the optimizer's update of every weight (the 20000 x 256 token table included: both frameworks update
   all of it at every step).

dlcli's self-attention projects and attends only the steps inside each example's mask (a padded step attends
to nothing, so its output is the output bias, as Keras computes it), where PyTorch's nn.MultiheadAttention
computes every step and masks afterwards: on these reviews, padded to random lengths from 20 to 200 (110
valid steps on average), that is about 45% of the projections and 63% of the score products skipped. The
unpadded attention row shows the layer without that advantage.

    python benchmarks/transformer.py [--repeats 3] [--samples 5000] [--steps 20] [--json out.json]

Run it with a Python that has both dlcli and PyTorch 2.13 (`pip install -e '.[bench]'`). The goal is an
epoch ratio (dlcli / PyTorch) of at most 0.8.

Measure on a quiet machine: the attention's score and weighted-sum products are 64 small GEMMs per step
(batch x heads, at most 200 x 128 x 200), each of which OpenBLAS splits over its threads; on a loaded machine
its waiting threads spin, and one attention step took 3.0 s of CPU with 2 BLAS threads against 0.15 s with 1
(load average 10 on 2 cores), where PyTorch spreads whole matrices over its threads instead.
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
from typing import Any, Callable


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per part (after 3 untimed)")
    parser.add_argument("--json", type=str, default=None)
    return parser.parse_args()


ARGS = _parse()
THREAD_VARS = {v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}
os.environ.update(THREAD_VARS)

import numpy as np  # noqa: E402

VOCABULARY, LENGTH, EMBED, HEADS, KEY_DIM, DENSE, BATCH = 20000, 200, 256, 2, 128, 32, 32

SPEC = f"""
name = "transformer-benchmark"
seed = 1
[data]
train = "{{data}}"
[model]
input = {{{{ shape = [{LENGTH}], dtype = "int32" }}}}
[[model.layers]]
type = "positional_embedding"
sequence_length = {LENGTH}
input_dim = {VOCABULARY}
output_dim = {EMBED}
[[model.layers]]
type = "transformer_encoder"
embed_dim = {EMBED}
dense_dim = {DENSE}
num_heads = {HEADS}
key_dim = {KEY_DIM}
[[model.layers]]
type = "global_max_pooling1d"
[[model.layers]]
type = "dropout"
rate = 0.5
[[model.layers]]
type = "dense"
units = 1
activation = "sigmoid"
[train]
loss = "binary_crossentropy"
optimizer = "rmsprop"
epochs = 1
batch_size = {BATCH}
"""

TORCH_MODEL = r'''
import torch
class PositionalEmbedding(torch.nn.Module):
    def __init__(self, length, vocabulary, width):
        super().__init__()
        self.tokens, self.positions = torch.nn.Embedding(vocabulary, width), torch.nn.Embedding(length, width)
    def forward(self, ids):
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))
class Encoder(torch.nn.Module):
    def __init__(self, width, dense, heads):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        self.projection = torch.nn.Sequential(torch.nn.Linear(width, dense), torch.nn.ReLU(),
                                              torch.nn.Linear(dense, width))
        self.norm_1, self.norm_2 = torch.nn.LayerNorm(width, eps=1e-3), torch.nn.LayerNorm(width, eps=1e-3)
    def forward(self, x, padding):
        attended, _ = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)
        x = self.norm_1(x + attended)
        return self.norm_2(x + self.projection(x))
class Classifier(torch.nn.Module):
    def __init__(self, length, vocabulary, width, dense, heads):
        super().__init__()
        self.embedding, self.encoder = PositionalEmbedding(length, vocabulary, width), Encoder(width, dense, heads)
        self.dropout, self.out = torch.nn.Dropout(0.5), torch.nn.Linear(width, 1)
    def forward(self, ids):
        x = self.encoder(self.embedding(ids), ids == 0)
        return self.out(self.dropout(x.max(dim=1).values))
'''

TORCH_EPOCH = TORCH_MODEL + r'''
import json, sys, time
import numpy as np
threads, path = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(threads); torch.manual_seed(1)
d = np.load(path)
x, y = torch.from_numpy(d["x"].astype(np.int64)), torch.from_numpy(d["y"].astype(np.float32))[:, None]
model = Classifier(*[int(a) for a in sys.argv[3:8]])
# Keras' RMSprop: rho 0.9, epsilon 1e-7 (PyTorch's alpha is Keras' rho)
opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
loss_fn = torch.nn.BCEWithLogitsLoss()
start = time.perf_counter()
order = torch.randperm(len(x))
for i in range(0, len(x), int(sys.argv[8])):
    idx = order[i:i + int(sys.argv[8])]
    opt.zero_grad(); loss = loss_fn(model(x[idx]), y[idx]); loss.backward(); opt.step()
print(json.dumps({"seconds": time.perf_counter() - start}))
'''


def reviews(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ids, each review padded in front (id 0) to a random length from 20 to 200."""
    ids = rng.integers(1, VOCABULARY, (count, LENGTH)).astype(np.int32)
    ids[np.arange(LENGTH)[None, :] < (LENGTH - rng.integers(20, LENGTH + 1, count))[:, None]] = 0
    return ids, rng.integers(0, 2, count).astype(np.float32)


def dlcli_epoch(data: Path, workdir: Path, env: dict[str, str]) -> float:
    spec = workdir / f"{data.stem}.toml"
    spec.write_text(SPEC.format(data=data))
    out = subprocess.run([sys.executable, "-m", "dlcli", "train", str(spec), "--json", "--run-dir",
                          str(workdir / f"run-{time.monotonic_ns()}")], env=env, cwd=workdir,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dlcli train failed:\n{out.stderr}")
    return next(json.loads(line)["seconds"] for line in out.stdout.splitlines() if '"event": "epoch"' in line)


def torch_epoch(data: Path, workdir: Path, env: dict[str, str]) -> float:
    sizes = [str(v) for v in (LENGTH, VOCABULARY, EMBED, DENSE, HEADS, BATCH)]
    out = subprocess.run([sys.executable, "-c", TORCH_EPOCH, str(ARGS.threads), str(data), *sizes], env=env,
                         cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the PyTorch run failed:\n{out.stderr}")
    return json.loads(out.stdout)["seconds"]


def median_ms(step: Callable[[], Any]) -> float:
    """Median milliseconds of step() over ARGS.steps runs, after 3 untimed ones (Numba compiles, caches warm)."""
    for _ in range(3):
        step()
    times = []
    for _ in range(ARGS.steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def dlcli_parts(x: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """dlcli's ms per step of each part, forward and backward, on the epoch's shapes."""
    from dlcli.graph import build_model
    from dlcli.layers import create_layer
    from dlcli.optimizers import create_optimizer
    from dlcli.spec.load import validate_spec
    from dlcli.tensor import Tensor

    rng = np.random.default_rng(0)
    mask = ids != 0
    attention = create_layer({"type": "multi_head_attention", "num_heads": HEADS, "key_dim": KEY_DIM})
    attention.connect([(LENGTH, EMBED)], rng)
    norm = create_layer({"type": "layer_normalization"})
    norm.build((LENGTH, EMBED), rng)
    dense_1 = create_layer({"type": "dense", "units": DENSE, "activation": "relu"})
    dense_1.build((LENGTH, EMBED), rng)
    dense_2 = create_layer({"type": "dense", "units": EMBED})
    dense_2.build((LENGTH, DENSE), rng)
    head = create_layer({"type": "dense", "units": 1})
    head.build((EMBED,), rng)

    def run(forward: Callable[[Tensor], Tensor], padding_mask: np.ndarray | None = mask) -> Callable[[], None]:
        def step() -> None:
            t = Tensor(x, requires_grad=True)
            t.mask = padding_mask
            forward(t).sum().backward()
        return step

    import tomllib

    spec = validate_spec(tomllib.loads(SPEC.format(data="unused.npz")), Path("benchmark.toml"))
    model = build_model(spec.model, rng, spec)
    optimizer = create_optimizer(spec.train.optimizer.model_dump(), model.trainable_parameters())
    for param in model.trainable_parameters().values():
        param.grad = np.ones(param.shape, np.float32) * 1e-3
    return {"attention": median_ms(run(lambda t: attention(t))),
            "attention_unpadded": median_ms(run(lambda t: attention(t), None)),
            "layer_norm": median_ms(run(lambda t: norm(norm(t)))),
            "dense": median_ms(run(lambda t: dense_2(dense_1(t)) + head(t[:, 0]).sum())),
            "optimizer": median_ms(optimizer.step)}


def torch_parts(x: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """PyTorch's ms per step of the same parts."""
    import torch

    torch.set_num_threads(ARGS.threads)
    namespace: dict[str, Any] = {}
    exec(TORCH_MODEL, namespace)
    padding = torch.from_numpy(ids == 0)
    attention = torch.nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
    norm = torch.nn.LayerNorm(EMBED, eps=1e-3)
    dense_1, dense_2, head = torch.nn.Linear(EMBED, DENSE), torch.nn.Linear(DENSE, EMBED), torch.nn.Linear(EMBED, 1)

    def run(forward: Callable[[Any], Any]) -> Callable[[], None]:
        def step() -> None:
            t = torch.from_numpy(x).requires_grad_(True)
            forward(t).sum().backward()
        return step

    model = namespace["Classifier"](LENGTH, VOCABULARY, EMBED, DENSE, HEADS)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    for param in model.parameters():
        param.grad = torch.full_like(param, 1e-3)
    return {"attention": median_ms(run(lambda t: attention(t, t, t, key_padding_mask=padding,
                                                           need_weights=False)[0])),
            "attention_unpadded": median_ms(run(lambda t: attention(t, t, t, need_weights=False)[0])),
            "layer_norm": median_ms(run(lambda t: norm(norm(t)))),
            "dense": median_ms(run(lambda t: dense_2(torch.relu(dense_1(t))) + head(t[:, 0]).sum())),
            "optimizer": median_ms(optimizer.step)}


def main() -> int:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ids, labels = reviews(rng, ARGS.samples)
        data = workdir / "reviews.npz"
        np.savez(data, x=ids, y=labels)
        warmup = workdir / "warmup.npz"  # an untimed short epoch: the Numba cache is warm for every timed one
        np.savez(warmup, x=ids[:4 * BATCH], y=labels[:4 * BATCH])
        env = {**os.environ, **THREAD_VARS, "CI": "1", "NUMBA_CACHE_DIR": str(workdir / "numba-cache")}
        dlcli_epoch(warmup, workdir, env)
        ours, theirs = [], []
        for _ in range(ARGS.repeats):
            ours.append(dlcli_epoch(data, workdir, env))
            theirs.append(torch_epoch(data, workdir, env))
    x = rng.normal(size=(BATCH, LENGTH, EMBED)).astype(np.float32)
    parts = {"dlcli": dlcli_parts(x, ids[:BATCH]), "torch": torch_parts(x, ids[:BATCH])}
    epoch = {"dlcli_s": statistics.median(ours), "torch_s": statistics.median(theirs), "dlcli_runs": ours,
             "torch_runs": theirs}
    epoch["ratio"] = epoch["dlcli_s"] / epoch["torch_s"]
    print(f"Ch. 11 encoder classifier (vocabulary {VOCABULARY}, sequence {LENGTH}, embed {EMBED}, {HEADS} heads of "
          f"{KEY_DIM}, dense {DENSE}, batch {BATCH}): {ARGS.samples} sequences, threads={ARGS.threads}, median of "
          f"{ARGS.repeats} epochs (Numba cache warm); parts: ms per step, forward + backward, median of {ARGS.steps}")
    print("| | dlcli | PyTorch 2.13 | ratio |")
    print("|---|---|---|---|")
    print(f"| seconds per epoch | {epoch['dlcli_s']:.2f} | {epoch['torch_s']:.2f} | {epoch['ratio']:.2f} |")
    for part in ("attention", "attention_unpadded", "layer_norm", "dense", "optimizer"):
        ours_ms, theirs_ms = parts["dlcli"][part], parts["torch"][part]
        print(f"| {part.replace('_', ' ')}, ms per step | {ours_ms:.2f} | {theirs_ms:.2f} | {ours_ms / theirs_ms:.2f} |")
    if ARGS.json:
        Path(ARGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.json).write_text(json.dumps({"benchmark": "transformer", "epoch": epoch, "parts": parts,
                                               "threads": ARGS.threads, "samples": ARGS.samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
