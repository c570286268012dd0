"""Wall time of `dlcli --help` (issue 16: unchanged by the new commands, at most 0.15 s).

Each measurement starts a fresh interpreter, as a user's shell does; the reference is the bare interpreter start
(`python -c pass`) measured in the same run, so the ratio says what dlcli adds. `--tree PATH` times another
checkout too (e.g. the main branch before the change), imported through PYTHONPATH.

    python benchmarks/help_time.py --repeats 21 --tree ../main --json benchmarks/results/help_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
LIMIT = 0.15


def wall(command: list[str], env: dict[str, str], repeats: int) -> float:
    """Median seconds of `repeats` runs of `command` (one warm-up run first, not counted)."""
    times = []
    for index in range(repeats + 1):
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if index:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="runs per measurement (median)")
    parser.add_argument("--tree", action="append", default=[], type=Path,
                        help="another dlcli checkout to time as well (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    reference = wall([sys.executable, "-c", "pass"], base, args.repeats)
    rows = []
    for tree in [HERE, *args.tree]:
        seconds = wall([sys.executable, "-m", "dlcli", "--help"], {**base, "PYTHONPATH": str(tree.resolve())},
                       args.repeats)
        rows.append({"tree": str(tree), "help_seconds": seconds, "python_start_seconds": reference,
                     "ratio_to_python_start": seconds / reference, "within_limit": seconds <= LIMIT})
    print(f"{'tree':<40} {'dlcli --help (s)':>16} {'python -c pass (s)':>19} {'ratio':>6}  <= {LIMIT} s")
    for row in rows:
        print(f"{row['tree'][-40:]:<40} {row['help_seconds']:>16.3f} {row['python_start_seconds']:>19.3f} "
              f"{row['ratio_to_python_start']:>6.2f}  {'yes' if row['within_limit'] else 'NO'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"repeats": args.repeats, "limit_seconds": LIMIT, "rows": rows}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
