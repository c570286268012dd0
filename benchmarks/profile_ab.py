"""Per-layer A/B of a spec's training step between two checkouts: `dlcli profile` of each, alternating.

Each repeat runs `dlcli profile SPEC --json` once with the dlcli of --before (PYTHONPATH=that checkout) and once
with this checkout's (or --after's), one after the other, so both see the machine as it is; each checkout keeps
its own Numba cache, filled by an untimed first run. The table gives, per node and per phase (data, loss,
optimizer, metrics, other) and for the whole step, the median over repeats of each run's median forward and
backward milliseconds, and after / before of their sum.

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/profile_ab.py --before ../base
        [--after .] [--spec specs/mnist_convnet.toml] [--repeats 3] [--steps 40] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare against")
    parser.add_argument("--after", type=Path, default=REPO, help="default: this checkout")
    parser.add_argument("--spec", type=Path, default=REPO / "specs" / "mnist_convnet.toml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=str, default=None)
    return parser.parse_args()


def profile(checkout: Path, spec: Path, steps: int, env: dict[str, str]) -> dict:
    """One `dlcli profile --json` run of `spec` with the dlcli of `checkout`."""
    # run from the spec's folder, not a checkout: `python -m` puts the working directory first on sys.path, so
    # from a checkout's root every run would import that checkout's dlcli whatever PYTHONPATH says
    out = subprocess.run([sys.executable, "-m", "dlcli", "profile", str(spec.resolve()), "--steps", str(steps),
                          "--warmup", "5", "--json"], env={**env, "PYTHONPATH": str(checkout.resolve())},
                         cwd=spec.resolve().parent, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dlcli profile failed with {checkout}:\n{out.stderr}")
    return json.loads(out.stdout)


def rows(result: dict) -> dict[str, tuple[float, float]]:
    """(forward ms, backward ms) per node, then per phase and the step total (forward column only)."""
    table = {n["node"]: (n["forward_ms"], n["backward_ms"]) for n in result["nodes"]}
    table.update({phase: (ms, 0.0) for phase, ms in result["phases"].items()})
    table["step"] = (result["total_ms"], 0.0)
    return table


def main() -> int:
    args = _parse()
    env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                            "NUMBA_NUM_THREADS")}}
    checkouts = {"before": args.before, "after": args.after}
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {side: [] for side in checkouts}
    with tempfile.TemporaryDirectory() as caches:
        side_env = {side: {**env, "NUMBA_CACHE_DIR": str(Path(caches) / side)} for side in checkouts}
        for side, checkout in checkouts.items():  # untimed: fills each checkout's kernel cache
            profile(checkout, args.spec, 2, side_env[side])
        for _ in range(args.repeats):
            for side, checkout in checkouts.items():
                runs[side].append(rows(profile(checkout, args.spec, args.steps, side_env[side])))
    medians = {side: {name: tuple(statistics.median(run[name][i] for run in side_runs) for i in (0, 1))
                      for name in side_runs[0]} for side, side_runs in runs.items()}
    print(f"{args.spec.name}: before {args.before}, after {args.after}; threads={args.threads}, median of "
          f"{args.repeats} x {args.steps} steps (ms)")
    print("| node or phase | before fwd | before bwd | after fwd | after bwd | after / before |")
    print("|---|---|---|---|---|---|")
    for name, (fwd, bwd) in medians["before"].items():
        after_fwd, after_bwd = medians["after"].get(name, (float("nan"), float("nan")))
        ratio = (after_fwd + after_bwd) / (fwd + bwd) if fwd + bwd else float("nan")
        print(f"| {name} | {fwd:.3f} | {bwd:.3f} | {after_fwd:.3f} | {after_bwd:.3f} | {ratio:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "profile_ab", "spec": str(args.spec),
                                               "before": str(args.before), "after": str(args.after),
                                               "threads": args.threads, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
