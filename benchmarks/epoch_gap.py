"""Where a real epoch's time goes beyond `dlcli profile`'s step: epochs of two lengths against the profile, A/B.

The issue-17 gap: `dlcli train`'s epoch (seconds from its --json epoch event, divided by its steps) against
`dlcli profile`'s step total, both on the same spec, data, threads and machine. Each repeat runs, for each
checkout in turn (alternating, so both see the machine as it is): `dlcli train SPEC --set train.epochs=1 --set
train.steps_per_epoch=N` for the --short and the --long N, and `dlcli profile SPEC --json`. From the two epoch
lengths: the per-step cost of the loop (the slope, (long - short) / (long - short steps)) and the epoch's fixed
cost (the intercept: what the first steps pay once, e.g. loading kernels from the cache). Per checkout, medians
over repeats (--stat min: minimums, steadier on a busy machine): the short epoch's seconds, the long epoch's ms
a step, the slope, the fixed seconds, the profile's step (median) and the gap slope - profile; then after /
before of each epoch. Each checkout keeps its own Numba cache, filled by an untimed `dlcli warmup` first (as
benchmarks/convnet.py does). Run from anywhere; each run's working directory is a temporary folder, so
PYTHONPATH picks the checkout.

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/epoch_gap.py --before ../base [--after .]
        [--spec specs/mnist_convnet.toml] [--short 100] [--long 400] [--repeats 3] [--threads 2] [--stat median]
        [--json out.json]
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the checkout to compare against (optional)")
    parser.add_argument("--after", type=Path, default=REPO, help="default: this checkout")
    parser.add_argument("--spec", type=Path, default=REPO / "specs" / "mnist_convnet.toml")
    parser.add_argument("--short", type=int, default=100, help="steps of the short epoch")
    parser.add_argument("--long", type=int, default=400, help="steps of the long epoch")
    parser.add_argument("--profile-steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stat", choices=["median", "min"], default="median",
                        help="over repeats: min is the steadier on a busy machine (other work only adds time)")
    parser.add_argument("--json", type=str, default=None)
    return parser.parse_args()


def _run(args: list[str], checkout: Path, env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "dlcli", *args], env={**env, "PYTHONPATH": str(checkout)},
                         cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dlcli {args[0]} failed with {checkout}:\n{out.stderr}")
    return out.stdout


def epoch_seconds(checkout: Path, spec: Path, steps: int, env: dict[str, str], workdir: Path) -> float:
    """One epoch of `steps` steps through `dlcli train --json`: the epoch event's seconds."""
    run_dir = tempfile.mkdtemp(dir=workdir) + "/run"
    stdout = _run(["train", str(spec), "--json", "--run-dir", run_dir, "--set", "train.epochs=1",
                   "--set", f"train.steps_per_epoch={steps}"], checkout, env, workdir)
    return next(json.loads(line)["seconds"] for line in stdout.splitlines() if '"event": "epoch"' in line)


def profile_ms(checkout: Path, spec: Path, steps: int, env: dict[str, str]) -> float:
    """`dlcli profile --json`'s step total (median of its timed steps), in ms: profile_ab.py's run of it."""
    from profile_ab import profile  # beside this file: `python benchmarks/epoch_gap.py` puts benchmarks/ on the path

    return float(profile(checkout, spec, steps, env)["total_ms"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    checkouts = {"after": args.after.resolve()}
    if args.before is not None:
        checkouts = {"before": args.before.resolve(), **checkouts}
    threads = str(args.threads)
    base_env = {**os.environ, "CI": "1", **{v: threads for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                  "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    spec = args.spec.resolve()
    samples: dict[str, dict[str, list[float]]] = {name: {"short": [], "long": [], "profile": []} for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        envs = {name: {**base_env, "NUMBA_CACHE_DIR": str(workdir / f"numba-{name}")} for name in checkouts}
        for name, checkout in checkouts.items():  # compile into each fresh cache first: untimed
            _run(["warmup", str(spec)], checkout, envs[name], workdir)
        for _ in range(args.repeats):
            for name, checkout in checkouts.items():
                samples[name]["short"].append(epoch_seconds(checkout, spec, args.short, envs[name], workdir))
                samples[name]["long"].append(epoch_seconds(checkout, spec, args.long, envs[name], workdir))
                samples[name]["profile"].append(profile_ms(checkout, spec, args.profile_steps, envs[name]))
    result: dict[str, Any] = {"benchmark": "epoch_gap", "spec": spec.name, "short": args.short, "long": args.long,
                              "repeats": args.repeats, "threads": args.threads, "samples": samples}
    stat = statistics.median if args.stat == "median" else min
    result["stat"] = args.stat
    for name, s in samples.items():
        slopes = [(lo - sh) / (args.long - args.short) for sh, lo in zip(s["short"], s["long"])]
        fixed = [sh - slope * args.short for sh, slope in zip(s["short"], slopes)]
        result[name] = {"checkout": str(checkouts[name]),
                        "long_ms_per_step": stat(s["long"]) / args.long * 1e3,
                        "short_seconds": stat(s["short"]),
                        "slope_ms_per_step": stat(slopes) * 1e3,
                        "fixed_seconds": stat(fixed),
                        "profile_step_ms": stat(s["profile"])}
        result[name]["gap_ms_per_step"] = result[name]["slope_ms_per_step"] - result[name]["profile_step_ms"]
    if "before" in result:
        for length in ("short", "long"):
            result[f"{length}_epoch_after_over_before"] = \
                stat(samples["after"][length]) / stat(samples["before"][length])
    return result


def main() -> int:
    args = _parse()
    if not os.environ.get("DLCLI_DATASETS_MIRROR") and not os.environ.get("DLCLI_CACHE"):
        print("set DLCLI_DATASETS_MIRROR (e.g. ../shared/datasets) or a DLCLI_CACHE holding the dataset",
              file=sys.stderr)
        return 2
    result = measure(args)
    print(f"{result['spec']}: epochs of {args.short} and {args.long} steps and `dlcli profile`, threads="
          f"{args.threads}, {args.stat} of {args.repeats}")
    print(f"| checkout | {args.short}-step epoch s | {args.long}-step epoch ms/step | loop ms/step (slope) | "
          "fixed s (intercept) | profile step ms | gap ms/step |")
    print("|---|---|---|---|---|---|---|")
    for name in ("before", "after"):
        if name in result:
            r = result[name]
            print(f"| {name} ({Path(r['checkout']).name}) | {r['short_seconds']:.3f} | {r['long_ms_per_step']:.2f} | "
                  f"{r['slope_ms_per_step']:.2f}"
                  f" | {r['fixed_seconds']:.3f} | {r['profile_step_ms']:.2f} | {r['gap_ms_per_step']:.2f} |")
    if "long_epoch_after_over_before" in result:
        print(f"after / before: {args.short}-step epoch {result['short_epoch_after_over_before']:.3f}, "
              f"{args.long}-step epoch {result['long_epoch_after_over_before']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
