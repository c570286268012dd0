"""An embedding table's gradient and Adam step: sparse (only the rows looked up) against dense, in ms.

Workload: a 10000 x 32 float32 table (IMDB's top 10000 words) and, to show where sparsity pays, a
200000 x 64 one; a batch of 128 sequences of 500 ids, so 64000 lookups. Two id distributions: uniform over
the table (the small table has nearly every row touched) and Zipf-like word frequencies (a few thousand
distinct rows, as real text gives). For each: the table's gradient from
d_out (SparseRows.from_rows against a dense scatter-add), and one Adam step with that gradient (the default
sparse_updates = "keras" pass against the dense kernel on the densified gradient; benchmarks/
embedding_update_rule.py compares the lazy rule). Median of `--repeats` calls after warm-up.

    python benchmarks/embedding_step.py [--threads 2] [--repeats 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / Numba threads (default 2)")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from dlcli.kernels.sparse import scatter_add_rows  # noqa: E402
from dlcli.optimizers import create_optimizer  # noqa: E402
from dlcli.tensor import SparseRows, Tensor  # noqa: E402

TABLES = [(10000, 32), (200000, 64)]
BATCH, STEPS = 128, 500


def _ids(kind: str, rows: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(0, rows, size=(BATCH, STEPS))
    return np.minimum(rng.zipf(1.3, size=(BATCH, STEPS)), rows - 1)  # word frequencies follow Zipf's law


def _median_ms(fn: Callable[[], object]) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(ARGS.repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _dense_gradient(ids: np.ndarray, d_out: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    scatter_add_rows(out, ids.reshape(-1), d_out.reshape(-1, shape[1]))
    return out


def _step_ms(grad: SparseRows | np.ndarray, rng: np.random.Generator) -> float:
    table = Tensor(rng.uniform(-0.05, 0.05, grad.shape).astype(np.float32), requires_grad=True)
    optimizer = create_optimizer({"type": "adam", "learning_rate": 1e-3}, {"embeddings": table})

    def step() -> None:
        table.grad = grad
        optimizer.step()

    return _median_ms(step)


def main() -> None:
    rng = np.random.default_rng(0)
    results = []
    for shape in TABLES:
        for kind in ("uniform", "zipf"):
            ids = _ids(kind, shape[0], rng)
            d_out = rng.normal(size=(BATCH, STEPS, shape[1])).astype(np.float32)
            sparse = SparseRows.from_rows(ids, d_out, shape)
            dense = _dense_gradient(ids, d_out, shape)
            np.testing.assert_allclose(sparse.to_dense(), dense, rtol=1e-4, atol=1e-4)
            results.append({
                "table": f"{shape[0]}x{shape[1]}", "ids": kind, "rows_touched": int(sparse.indices.size),
                "gradient_sparse_ms": _median_ms(lambda: SparseRows.from_rows(ids, d_out, shape)),
                "gradient_dense_ms": _median_ms(lambda: _dense_gradient(ids, d_out, shape)),
                "adam_step_sparse_ms": _step_ms(sparse, rng), "adam_step_dense_ms": _step_ms(dense, rng)})
    print(f"{BATCH}x{STEPS} ids, Adam, {ARGS.threads} threads, median of {ARGS.repeats} calls")
    print(f"{'table':>11} {'ids':8} {'rows':>6} {'grad sparse':>12} {'grad dense':>11} {'adam sparse':>12} "
          f"{'adam dense':>11}")
    for r in results:
        print(f"{r['table']:>11} {r['ids']:8} {r['rows_touched']:6d} {r['gradient_sparse_ms']:10.2f}ms "
              f"{r['gradient_dense_ms']:9.2f}ms {r['adam_step_sparse_ms']:10.2f}ms {r['adam_step_dense_ms']:9.2f}ms")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"benchmark": "embedding_step", "threads": ARGS.threads, "repeats": ARGS.repeats,
                       "numpy": np.__version__, "python": platform.python_version(), "batch": BATCH,
                       "steps": STEPS, "rows": results}, f, indent=2)


if __name__ == "__main__":
    main()
