"""Data-parallel training over MPI: Allreduce time for 1 MB and 16 MB float32 buffers between local ranks, and
steps per second of the ch. 2 MNIST MLP with 1 and 2 ranks (`dlcli train --workers N`).

On a 2-core machine 2 ranks get 1 BLAS thread each, so the 2-rank run is a correctness check, not a speed-up:
the point is the allreduce cost per step against the compute per step (see README, multi-machine training).

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/data_parallel.py [--repeats 3] [--json out.json]
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
SIZES_MB = (1, 16)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="training runs per world size")
    parser.add_argument("--steps", type=int, default=150, help="training steps per run (one epoch of this many)")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    parser.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def allreduce_worker() -> None:
    """Run under mpiexec: time in-place Allreduce of each buffer size; rank 0 prints medians as JSON."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = {}
    for mb in SIZES_MB:
        buffer = np.ones(mb * 2**20 // 4, np.float32)
        times = []
        for i in range(60):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            if i >= 10:  # the first calls set up shared-memory channels
                times.append(time.perf_counter() - start)
        out[f"{mb}MB"] = statistics.median(times) * 1e6
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def _train_steps_per_second(workers: int, steps: int) -> float:
    """Steps per second of one epoch of `steps` MNIST MLP steps, validation excluded (read from the JSON events)."""
    with tempfile.TemporaryDirectory() as run:
        command = [sys.executable, "-m", "dlcli", "train", str(REPO / "specs" / "mnist_mlp.toml"), "--json",
                   "--run-dir", run, "--set", "train.epochs=2", "--set", f"train.steps_per_epoch={steps}",
                   "--set", "data.validation_split=0.0", "--workers", str(workers)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        epochs = [json.loads(line) for line in result.stdout.splitlines() if '"epoch"' in line]
        epochs = [e for e in epochs if e.get("event") == "epoch"]
        return steps / epochs[-1]["seconds"]  # the second epoch: Numba compiled and BLAS warm


def main() -> None:
    args = _parse()
    if args.allreduce_worker:
        allreduce_worker()
        return
    result = subprocess.run([_mpiexec(), "-n", str(args.ranks), sys.executable, __file__, "--allreduce-worker"],
                            capture_output=True, text=True, check=True)
    allreduce_us = json.loads(result.stdout.strip().splitlines()[-1])
    rates: dict[int, list[float]] = {1: [], args.ranks: []}
    for _ in range(args.repeats):
        for workers in rates:
            rates[workers].append(_train_steps_per_second(workers, args.steps))
    table = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "allreduce_us": allreduce_us,
        "allreduce_GBps": {k: (int(k[:-2]) * 2**20) / (v * 1e-6) / 1e9 for k, v in allreduce_us.items()},
        "mnist_mlp_steps_per_s": {str(k): statistics.median(v) for k, v in rates.items()},
        "mnist_mlp_ms_per_step": {str(k): 1e3 / statistics.median(v) for k, v in rates.items()},
        "mnist_mlp_params": 784 * 512 + 512 + 512 * 10 + 10,
    }
    print(f"Data-parallel training over MPI ({args.ranks} local ranks), median of {args.repeats} runs")
    print("| measure | value |")
    print("|---|---|")
    for size, us in allreduce_us.items():
        print(f"| Allreduce {size} float32, {args.ranks} ranks | {us:.0f} us ({table['allreduce_GBps'][size]:.2f} GB/s) |")
    for workers, rate in table["mnist_mlp_steps_per_s"].items():
        print(f"| MNIST MLP, batch 128, {workers} rank(s) | {rate:.0f} steps/s "
              f"({table['mnist_mlp_ms_per_step'][workers]:.2f} ms/step) |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
