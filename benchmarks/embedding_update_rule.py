"""One optimizer step on a large embedding table under each update rule: Keras' fused pass, lazy, dense, in ms.

Workload: a 200000 x 64 float32 table and a batch gradient touching 4000 distinct rows (a SparseRows, as an
embedding lookup gives). Per optimizer with slots (sgd with momentum, rmsprop, adam): the default
sparse_updates = "keras" (one kernel pass over the whole table, the gradient rows scattered in),
sparse_updates = "lazy" (the 4000 rows only), and a dense step (the gradient made a dense array first, as a
framework without row-sparse gradients does, then the same kernel over the table). The first and last give
the same numbers bit for bit. Median of `--repeats` steps after warm-up.

    python benchmarks/embedding_update_rule.py [--threads 2] [--repeats 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / Numba threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from dlcli.optimizers import create_optimizer  # noqa: E402
from dlcli.tensor import SparseRows, Tensor  # noqa: E402

SHAPE, ROWS_TOUCHED = (200_000, 64), 4000
OPTIMIZERS = {"sgd_momentum": {"type": "sgd", "momentum": 0.9}, "rmsprop": {"type": "rmsprop"},
              "adam": {"type": "adam"}}


def _step_ms(config: dict, grad: SparseRows, rule: str, rng: np.random.Generator) -> float:
    """Median ms of one step; rule "dense" densifies the gradient inside the timed step."""
    table = Tensor(rng.uniform(-0.05, 0.05, SHAPE).astype(np.float32), requires_grad=True)
    sparse_updates = "keras" if rule == "dense" else rule
    optimizer = create_optimizer({**config, "sparse_updates": sparse_updates}, {"embeddings": table})
    times = []
    for repeat in range(5 + ARGS.repeats):
        start = time.perf_counter()
        table.grad = grad.to_dense() if rule == "dense" else grad
        optimizer.step()
        if repeat >= 5:  # the first steps compile the kernel and fault the slots' pages in
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(SHAPE[0], ROWS_TOUCHED, replace=False))
    grad = SparseRows(rows, rng.normal(size=(ROWS_TOUCHED, SHAPE[1])).astype(np.float32), SHAPE, is_coalesced=True)
    results = [{"optimizer": name, **{f"{rule}_ms": _step_ms(config, grad, rule, rng)
                                      for rule in ("keras", "lazy", "dense")}}
               for name, config in OPTIMIZERS.items()]
    print(f"{SHAPE[0]}x{SHAPE[1]} table, {ROWS_TOUCHED} rows touched, {ARGS.threads} threads, "
          f"median of {ARGS.repeats} steps")
    print(f"{'optimizer':>13} {'keras (fused)':>14} {'lazy':>9} {'dense':>9}")
    for r in results:
        print(f"{r['optimizer']:>13} {r['keras_ms']:12.2f}ms {r['lazy_ms']:7.2f}ms {r['dense_ms']:7.2f}ms")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"benchmark": "embedding_update_rule", "threads": ARGS.threads, "repeats": ARGS.repeats,
                       "numpy": np.__version__, "python": platform.python_version(), "table": list(SHAPE),
                       "rows_touched": ROWS_TOUCHED, "rows": results}, f, indent=2)


if __name__ == "__main__":
    main()
