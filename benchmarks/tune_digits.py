"""dlcli tune: the issue's 8-trial study of the digits spec (3 epochs a trial, TPE, median pruner) with --jobs 1 and
--jobs 2, against the reference a sweep is today: a shell loop of 8 `dlcli train` runs, timed in the same run.

Quoted: wall time of each (median of --repeats, each repeat a fresh study), the ratio to the loop, the trials
pruned, and the best value against the default spec's (trial 0 of a study is the spec itself; the loop trains the
same 8 specs as the --jobs 1 study's trials, so its best is the same number computed without pruning).

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/tune_digits.py [--repeats 3] [--json out.json]
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPEC = str(REPO / "specs" / "digits_mlp.toml")
SPACE = ["--param", "train.optimizer.learning_rate=loguniform(1e-4, 1e-2)",
         "--param", "model.layers[1].units=int(16, 128, log)"]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="studies per setting (median of their times)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    return parser.parse_args()


def _dlcli(*args: str, cwd: str) -> list[dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "dlcli", *args, "--json"], cwd=cwd, capture_output=True, text=True,
                            check=True, env={**os.environ, "CI": "true"})
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _tune(jobs: int, trials: int, epochs: int) -> dict[str, Any]:
    """One fresh study: wall time, the summary, and the trials' values (to train them again in the loop)."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        events = _dlcli("tune", SPEC, "--set", f"train.epochs={epochs}", *SPACE, "--metric", "val_accuracy",
                        "--trials", str(trials), "--sampler", "tpe", "--pruner", "median", "--jobs", str(jobs),
                        cwd=folder)
        seconds = time.perf_counter() - started
    ends = sorted((e for e in events if e["event"] == "trial_end"), key=lambda e: e["number"])
    return {"seconds": seconds, "summary": events[-1], "trials": ends}


def _loop(trials: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """The shell loop: one `dlcli train` per trial's values, one after another, no pruning."""
    values = []
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        for trial in trials:
            sets = [item for key, value in trial["params"].items() for item in ("--set", f"{key}={value!r}")]
            events = _dlcli("train", SPEC, "--set", f"train.epochs={epochs}", *sets, cwd=folder)
            values.append(max(e["val_accuracy"] for e in events if e["event"] == "epoch"))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "best": max(values), "default": values[0]}


def main() -> None:
    args = _parse()
    runs: dict[str, list[dict[str, Any]]] = {"loop": [], "jobs_1": [], "jobs_2": []}
    for _ in range(args.repeats):
        first = _tune(1, args.trials, args.epochs)
        runs["jobs_1"].append(first)
        runs["jobs_2"].append(_tune(2, args.trials, args.epochs))
        runs["loop"].append(_loop(first["trials"], args.epochs))
    loop_seconds = statistics.median(r["seconds"] for r in runs["loop"])
    table: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "trials": args.trials,
                             "epochs": args.epochs, "repeats": args.repeats, "loop_seconds": loop_seconds}
    for name in ("jobs_1", "jobs_2"):
        seconds = statistics.median(r["seconds"] for r in runs[name])
        summary = runs[name][-1]["summary"]
        table[name] = {"seconds": seconds, "ratio_to_loop": seconds / loop_seconds,
                       "pruned": [r["summary"]["pruned"] for r in runs[name]], "best": summary["best"]["value"],
                       "default": next(t["value"] for t in runs[name][-1]["trials"] if t["number"] == 0)}
    table["loop_best"] = runs["loop"][-1]["best"]
    print(f"dlcli tune: {args.trials} trials of digits_mlp.toml, {args.epochs} epochs each, TPE, median pruner; "
          f"median of {args.repeats}")
    print("| run | wall time (s) | vs shell loop | trials pruned | best val_accuracy | default spec's |")
    print("|---|---|---|---|---|---|")
    print(f"| shell loop of {args.trials} `dlcli train` | {loop_seconds:.1f} | 1.00 | 0 | {table['loop_best']:.4f} | "
          f"{runs['loop'][-1]['default']:.4f} |")
    for name, label in (("jobs_1", "dlcli tune --jobs 1"), ("jobs_2", "dlcli tune --jobs 2")):
        row = table[name]
        print(f"| {label} | {row['seconds']:.1f} | {row['ratio_to_loop']:.2f} | {'/'.join(map(str, row['pruned']))} | "
              f"{row['best']:.4f} | {row['default']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
