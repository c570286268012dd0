"""Run time of the small kernels whose compilation issue 17 trimmed: this checkout against a base checkout.

Times, per call (median of --repeats child runs, each the best of --calls calls after a warm-up call), Adam's
update of 1M float32 weights, the 2 x 2 max-pool forward of (32, 28, 28, 32) images, batch normalization forward
and backward on (7744, 64) rows, the CTC loss with its gradient (batch 64, T 35, 11 classes, labels of 1-5), and
the GRU op of mnist_sequences_ctc (64 sequences of 35 steps, 448 features, 128 units) forward, and forward and
backward.
Each child imports one checkout's dlcli (PYTHONPATH), alternating base and this one, with its own warm Numba
cache, so the ratio compares the same machine at the same time.

    python benchmarks/kernel_calls_ab.py --base /work/main [--repeats 5] [--calls 20] [--json out.json]
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

REPO = Path(__file__).resolve().parents[1]


def child(calls: int) -> dict[str, float]:
    """Best seconds per call of each kernel, in this process's dlcli."""
    import numpy as np

    from dlcli.kernels import batch_normalization, ctc, optim, pool

    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(1 << 20, np.float32), rng.standard_normal(1 << 20, np.float32)
    m, v = np.zeros_like(w), np.zeros_like(w)
    rows, zeros = np.zeros(1, np.int64), np.zeros(0, np.float32)
    x = rng.standard_normal((32, 28, 28, 32), np.float32)
    out, argmax = np.empty((32, 14, 14, 32), np.float32), np.empty((32, 14, 14, 32), np.int32)
    bx, gamma, beta = rng.standard_normal((7744, 64), np.float32), np.ones(64, np.float32), np.zeros(64, np.float32)
    b_out, mean, var, inv = np.empty_like(bx), *(np.empty(64, np.float32) for _ in range(3))
    d_x, d_gamma, d_beta = np.empty_like(bx), np.empty(64, np.float32), np.empty(64, np.float32)
    logits = rng.standard_normal((64, 35, 11), np.float32)
    label_lengths = rng.integers(1, 6, 64)
    labels = rng.integers(1, 11, (64, 5))
    input_lengths = np.full(64, 35, np.int64)
    nll, grad = np.empty(64), np.empty((64, 35, 11), np.float32)
    from dlcli import ops
    from dlcli.ops.recurrent import RecurrentOptions
    from dlcli.tensor import Tensor

    # the GRU of mnist_sequences_ctc (one direction): its time loops forward and backward through the op
    gru_params = [Tensor(rng.standard_normal(shape, np.float32) * scale, requires_grad=True)
                  for shape, scale in (((64, 35, 448), 1.0), ((448, 384), 0.05), ((128, 384), 0.05), ((2, 384), 0.1))]
    sequences = RecurrentOptions(return_sequences=True)

    def gru_step(backward: bool) -> None:
        for p in gru_params:
            p.zero_grad()
        out = ops.gru(*gru_params, options=sequences)
        if backward:
            out.sum().backward()

    jobs = {
        "gru forward (64,35,448 -> 128)": lambda: gru_step(False),
        "gru forward+backward (64,35,448 -> 128)": lambda: gru_step(True),
        "adam_update 1M": lambda: optim.adam_update(w, g, rows, zeros, m, v, None, 1e-3, 0.9, 0.999, 1e-7, True,
                                                      1.0, 0.0),
        "max_pool2d 2x2 (32,28,28,32)": lambda: pool.max_pool2d_forward(x, out, argmax, 2, 2, 2, 2, 0, 0),
        "batch_norm fwd+bwd (7744,64)": lambda: (
            batch_normalization.batch_norm_forward(bx, gamma, beta, 1e-3, b_out, mean, var, inv),
            batch_normalization.batch_norm_backward(bx, bx, gamma, mean, inv, d_x, d_gamma, d_beta)),
        "ctc_loss+grad (64,35,11)": lambda: ctc.ctc_loss(logits, labels, input_lengths, label_lengths, 0, nll,
                                                             grad),
    }
    best = {}
    for name, job in jobs.items():
        job()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            job()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare against")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    results: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    caches = {side: tempfile.mkdtemp(prefix=f"kernel_ab_{side}_") for side in results}
    for _ in range(args.repeats):
        for side, repo in (("base", args.base.resolve()), ("this", REPO)):
            env = dict(os.environ, PYTHONPATH=str(repo), NUMBA_CACHE_DIR=caches[side])
            run = subprocess.run([sys.executable, __file__, "--base", str(args.base), "--child", str(args.calls)],
                                 env=env, capture_output=True, text=True, check=True)
            results[side].append(json.loads(run.stdout.splitlines()[-1]))
    table = {name: {side: statistics.median(r[name] for r in results[side]) for side in results}
             for name in results["this"][0]}
    print("| kernel | base ms | this ms | this / base |\n|---|---|---|---|")
    for name, t in table.items():
        print(f"| {name} | {t['base'] * 1e3:.3f} | {t['this'] * 1e3:.3f} | {t['this'] / t['base']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
