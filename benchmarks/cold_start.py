"""The first run on a fresh machine: `dlcli train` of every shipped spec with an empty Numba cache (cold) and a
filled one (warm), one epoch of 2 steps each, as a new user or a fresh CI container runs it. The specs' small
data files are written by specs/make_*.py first; the five whose data cannot be made offline (UNMADE_DATA: a
photo folder, a download, a local Jena table, a run of another spec) are skipped unless named in --specs.

compile = cold - warm. Wall time is what a user waits; CPU time (the child's user + sys, from wait4) is what
compiling costs and stays steady when other processes share the cores, so both are printed. Each number is
the median of --repeats runs; a repeat runs cold then warm, alternating, and every cold run gets a new empty
cache. Datasets are read once before timing starts (their caches filled), so neither column counts a download
or a dataset build. With --warmup-command, a third column times `dlcli warmup SPEC` into an empty cache
followed by a run on it (what a Dockerfile or CI cache step pays once).

Compile times differ between machines far more than run times do (Numba compiles in Python: a machine whose
Python is half as fast compiles half as fast). So every repeat also runs REFERENCE_KERNEL, a fixed kernel that is
not dlcli's, compiled in a fresh process without a cache, and the table gives each spec's compile CPU as a
multiple of that kernel's compile CPU too ("in refs"): a figure that can be compared across machines and
sessions, where the seconds cannot.

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/cold_start.py [--repeats 3] [--specs a,b]
        [--repo PATH] [--json out.json]

--repo runs the dlcli of another checkout (PYTHONPATH=PATH), so "before" and "after" are measured by the
same script: e.g. --repo ../main, then --repo . (the default: this checkout). --base PATH measures that checkout
too, alternating with --repo's in every repeat (base cold, repo cold, base warm, repo warm), so that both see
the same load on a shared machine: one row each, the base's first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold + warm pairs per spec (median)")
    parser.add_argument("--specs", type=str, default=None, help="comma-separated spec names (default: every spec)")
    parser.add_argument("--repo", type=Path, default=REPO, help="the dlcli checkout to run (default: this one)")
    parser.add_argument("--base", type=Path, default=None,
                        help="another checkout measured alternately with --repo's in every repeat")
    parser.add_argument("--steps", type=int, default=2, help="training steps in the one epoch")
    parser.add_argument("--threads", type=int, default=2, help="NUMBA/OMP/BLAS threads of the runs")
    parser.add_argument("--warmup-command", action="store_true",
                        help="also time `dlcli warmup SPEC` into an empty cache (needs a dlcli that has it)")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    return parser.parse_args()


# Specs whose data a fresh machine cannot make offline: the user's own photos, a download, a local copy of the
# Jena table, a run of another spec. Skipped by name, with the reason printed.
UNMADE_DATA = {
    "cats_vs_dogs_convnet": "trains on the user's own photo folder",
    "imdb_transformer": "downloads the IMDB set",
    "jena_climate_gru": "reads a local copy of the Jena climate table",
    "finetune_head": "starts from a finetune_base run",
    "finetune_top": "starts from a finetune_head run",
}


def make_spec_data(graph_data: Path) -> None:
    """The shipped specs' small data files, written by specs/make_*.py into graph_data (a few seconds)."""
    for script, args in (("make_graph_data.py", []), ("make_segmentation_data.py", ["--images", "200"]),
                         ("make_text_data.py", ["--reviews", "400"]),
                         ("make_image_folder.py", ["--limit", "200", "--out", str(graph_data / "digits_images")])):
        out = [] if script == "make_image_folder.py" else ["--out", str(graph_data)]
        subprocess.run([sys.executable, str(SPECS / script), *out, *args], check=True, capture_output=True)


def spec_overrides(spec: Path, graph_data: Path, steps: int) -> list[str]:
    """--set arguments: one epoch of `steps` steps; the graph specs' data from graph_data; fashion_mnist read as
    MNIST (the same shapes; the mirror holds only MNIST)."""
    import tomllib

    data = tomllib.loads(spec.read_text())["data"]
    sets = ["train.epochs=1", f"train.steps_per_epoch={steps}"]
    if data.get("dataset") == "fashion_mnist":
        sets.append('data.dataset="mnist"')
    for key in ("train", "test", "validation"):
        if isinstance(data.get(key), str):
            path = Path(data[key])  # "data/x.npz" or "data/digits_images/train": the same below graph_data
            inside = path.relative_to("data") if path.parts[:1] == ("data",) else Path(path.name)
            sets.append(f'data.{key}="{graph_data / inside}"')
    return [arg for s in sets for arg in ("--set", s)]


# Not dlcli code, so that it stays the same yardstick whatever dlcli's kernels become: loops over rows of 2-D
# float32 views, a max, tanh, a division and an array reduction, about what a small dlcli kernel holds.
REFERENCE_KERNEL = """
import time
import numba
import numpy as np
from numba.core.registry import cpu_target

cpu_target.target_context.refresh()  # Numba's one-time set-up, which dlcli's runs pay apart from compiling
cpu_target.typing_context.refresh()


@numba.njit(cache=False, error_model="numpy")
def reference(x, w, out, shift):
    for n in range(x.shape[0]):
        row, o = x[n], out[n]
        total = np.float32(0)
        for j in range(row.size):
            v = max(row[j] * w[j] + shift, np.float32(0))
            o[j] = np.tanh(v)
            total += v
        for j in range(row.size):
            o[j] /= total + np.float32(1)
    return out.sum()


x = np.ones((4, 8), np.float32)
start = time.thread_time()
reference(x, x[0].copy(), np.empty_like(x), np.float32(0.5))
print(time.thread_time() - start)
"""


def reference_compile(env: dict[str, str], cwd: Path) -> float:
    """CPU seconds this machine takes to compile REFERENCE_KERNEL, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", REFERENCE_KERNEL], env=env, cwd=cwd, check=True, capture_output=True,
                         text=True).stdout
    return float(out.split()[-1])


def run_child(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + sys) of one command run to success, CPU from wait4's rusage."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    args = _parse()
    names = args.specs.split(",") if args.specs else sorted(p.stem for p in SPECS.glob("*.toml"))
    workdir = Path(tempfile.mkdtemp(prefix="dlcli-cold-start-"))
    env = {**os.environ, "DLCLI_CACHE": str(workdir / "data-cache"),
           **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    repos = [args.repo.resolve()] if args.base is None else [args.base.resolve(), args.repo.resolve()]
    graph_data = workdir / "graph-data"
    make_spec_data(graph_data)
    dlcli = [sys.executable, "-m", "dlcli"]
    rows = []
    references: list[float] = []
    try:
        for name in names:
            if name in UNMADE_DATA and not args.specs:
                print(f"skipped {name}: it {UNMADE_DATA[name]}", file=sys.stderr)
                continue
            spec = SPECS / f"{name}.toml"
            sets = spec_overrides(spec, graph_data, args.steps)
            counter = iter(range(10**6))

            def train(repo: Path, cache: Path) -> tuple[float, float]:
                run_dir = workdir / f"run-{name}-{next(counter)}"
                cmd = [*dlcli, "train", str(spec), "--quiet", "--run-dir", str(run_dir), *sets]
                result = run_child(cmd, {**env, "PYTHONPATH": str(repo), "NUMBA_CACHE_DIR": str(cache)}, workdir)
                shutil.rmtree(run_dir, ignore_errors=True)
                return result

            warm_caches = [workdir / f"numba-{name}-{i}-warm" for i in range(len(repos))]
            for repo, warm_cache in zip(repos, warm_caches):
                train(repo, warm_cache)  # fills the dataset cache and the warm Numba cache; not timed
            cold: list[list] = [[] for _ in repos]
            warm: list[list] = [[] for _ in repos]
            warmed: list[list] = [[] for _ in repos]
            spec_references = []  # this spec's: the machine's load may change between specs
            for repeat in range(args.repeats):
                spec_references.append(reference_compile(env, workdir))
                for i, repo in enumerate(repos):
                    empty = workdir / f"numba-{name}-{i}-cold-{repeat}"
                    cold[i].append(train(repo, empty))
                    shutil.rmtree(empty, ignore_errors=True)
                for i, repo in enumerate(repos):
                    warm[i].append(train(repo, warm_caches[i]))
                if args.warmup_command:
                    for i, repo in enumerate(repos):
                        fresh = workdir / f"numba-{name}-{i}-warmup-{repeat}"
                        cmd = [*dlcli, "warmup", str(spec), "--quiet"]
                        warmed[i].append(run_child(cmd, {**env, "PYTHONPATH": str(repo), "NUMBA_CACHE_DIR": str(fresh)},
                                                   workdir))
                        shutil.rmtree(fresh, ignore_errors=True)
            for i, repo in enumerate(repos):
                row = _row(name, repo, cold[i], warm[i], warmed[i], statistics.median(spec_references))
                rows.append(row)
                _print_row(row, first=len(rows) == 1, repeats=args.repeats)
            references += spec_references
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    reference = statistics.median(references) if references else None
    if reference is not None:
        print(f"ref: this machine compiles benchmarks/cold_start.py's REFERENCE_KERNEL in {reference:.3f} s CPU "
              f"(median of {len(references)}, fresh processes)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "benchmark": "cold_start", "repo": str(args.repo.resolve()),
            "base": None if args.base is None else str(args.base.resolve()), "repeats": args.repeats,
            "steps": args.steps, "threads": args.threads, "python": platform.python_version(),
            "cpus": os.cpu_count(), "reference_compile_cpu_s": reference, "reference_runs": references,
            "rows": rows}, indent=2))
    return 0


def _row(name: str, repo: Path, cold: list, warm: list, warmed: list, reference: float) -> dict:
    """One spec's medians for one checkout (each run: (wall, CPU) seconds); compile CPU also in references
    (reference: REFERENCE_KERNEL's compile CPU, median of the runs beside this spec's)."""
    row = {"spec": name, "repo": str(repo),
           "cold_wall_s": statistics.median(w for w, _ in cold), "warm_wall_s": statistics.median(w for w, _ in warm),
           "cold_cpu_s": statistics.median(c for _, c in cold), "warm_cpu_s": statistics.median(c for _, c in warm),
           "runs": {"cold": cold, "warm": warm}}
    row["compile_wall_s"] = row["cold_wall_s"] - row["warm_wall_s"]
    row["compile_cpu_s"] = row["cold_cpu_s"] - row["warm_cpu_s"]
    row["reference_compile_cpu_s"] = reference
    row["compile_cpu_refs"] = row["compile_cpu_s"] / reference
    if warmed:
        row["warmup_command_cpu_s"] = statistics.median(c for _, c in warmed)
        row["runs"]["warmup_command"] = warmed
    return row


def _print_row(row: dict, first: bool, repeats: int) -> None:
    if first:
        print(f"First run of each spec (1 epoch, 2 steps), median of {repeats}: empty vs warm NUMBA_CACHE_DIR")
        print("| spec | checkout | cold | warm | compile | cold CPU | warm CPU | compile CPU | in refs "
              "| warmup command CPU |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    warmup = f"{row['warmup_command_cpu_s']:.1f} s" if "warmup_command_cpu_s" in row else "-"
    print(f"| {row['spec']} | {Path(row['repo']).name} | {row['cold_wall_s']:.1f} s | {row['warm_wall_s']:.1f} s "
          f"| {row['compile_wall_s']:.1f} s | {row['cold_cpu_s']:.1f} s | {row['warm_cpu_s']:.1f} s "
          f"| **{row['compile_cpu_s']:.1f} s** | {row['compile_cpu_refs']:.1f} | {warmup} |",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
