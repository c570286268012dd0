"""What handing a kernel's second block to the parts thread costs (kernels/parts.py), against one thread doing it all.

in_parts runs a nogil kernel's blocks of rows on plain threads: the caller's and a pooled worker's, woken for
every call. Between the layers' matrix products (OpenBLAS's threads) that wake-up and the wait for the worker
cost a few tens of microseconds a call (issue 17 part 2, lead 4: about 45-60 us measured on the shared 2-core
machine), which a small call does not win back. This times, alternating in rounds, a 256 x 256 float32 product
followed by `bias_activation_rows` (the fused bias + relu pass every conv2d forward makes) over (rows, features)
arrays of several sizes, once on one thread (min_rows = rows) and once in as many blocks as threads; the
difference is what the split gains (negative: what it loses). The row count where the split starts to pay is
the min_rows a call of that width wants. Median over rounds of each round's median.

    python benchmarks/parts_handoff.py [--threads 2] [--rounds 10] [--calls 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="timed calls of each variant a round")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--json", type=str, default=None)
    return parser.parse_args()


ARGS = _parse()
os.environ.update({v: str(ARGS.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "NUMBA_NUM_THREADS")})

import dlcli  # noqa: E402, F401 - before NumPy: sets OPENBLAS_THREAD_TIMEOUT, as `dlcli train` has it
import numpy as np  # noqa: E402

from dlcli.kernels.conv import RELU, bias_activation_rows  # noqa: E402
from dlcli.kernels.parts import in_parts  # noqa: E402

ROWS = (64, 256, 576, 1024, 2048, 4096, 8192)


def main() -> int:
    rng = np.random.default_rng(0)
    product = rng.standard_normal((256, 256)).astype(np.float32)
    bias = np.zeros(ARGS.features, np.float32)
    arrays = {rows: rng.standard_normal((rows, ARGS.features)).astype(np.float32) for rows in ROWS}
    variants = {}
    for rows, out in arrays.items():
        variants[rows, "one"] = lambda out=out, rows=rows: (product @ product, in_parts(
            bias_activation_rows, rows, out, bias, RELU, min_rows=rows))
        variants[rows, "split"] = lambda out=out, rows=rows: (product @ product, in_parts(
            bias_activation_rows, rows, out, bias, RELU))
    variants["gemm", "alone"] = lambda: product @ product
    for call in variants.values():  # load the kernel, start the threads
        for _ in range(20):
            call()
    rounds: dict[tuple, list[float]] = {key: [] for key in variants}
    for _ in range(ARGS.rounds):
        for key, call in variants.items():
            times = []
            for _ in range(ARGS.calls):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            rounds[key].append(statistics.median(times) * 1e6)
    us = {key: statistics.median(values) for key, values in rounds.items()}
    gemm = us["gemm", "alone"]
    print(f"bias_activation_rows over (rows, {ARGS.features}) after a 256 x 256 product, threads={ARGS.threads}, "
          f"median of {ARGS.rounds} rounds; the product alone {gemm:.1f} us")
    print("| rows | one thread us | split us | split gains us |")
    print("|---|---|---|---|")
    table = []
    for rows in ROWS:
        one, split = us[rows, "one"] - gemm, us[rows, "split"] - gemm
        table.append({"rows": rows, "one_thread_us": one, "split_us": split, "split_gains_us": one - split})
        print(f"| {rows} | {one:.1f} | {split:.1f} | {one - split:.1f} |")
    if ARGS.json:
        Path(ARGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.json).write_text(json.dumps({"benchmark": "parts_handoff", "threads": ARGS.threads,
                                               "features": ARGS.features, "gemm_us": gemm, "rows": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
