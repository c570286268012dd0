"""What a spec's first run compiles: per Numba kernel (dispatcher and signature) the seconds its compilation
took on an empty NUMBA_CACHE_DIR, sorted, with a total.

Each spec runs `dlcli train SPEC` (one epoch of --steps steps, as benchmarks/cold_start.py runs it) in a child
process with a fresh, empty Numba cache. The child listens to Numba's "numba:compile" events: one per
(dispatcher, signature) compiled, nested when a kernel's typing compiles the kernels it calls. "self" is a
kernel's own time (its nested compiles subtracted), so the self column adds up to the total; "incl" includes
the kernels it called that compiled first. CPU is the compiling thread's CPU seconds (time.thread_time), steady
when other processes share the cores; wall is what the run waited. A kernel compiled for several signatures
has one row each, and "sigs" counts them in the summary line.

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/compile_time.py [SPEC ...] [--top 25]
        [--repo PATH] [--json out.json]

SPEC is a shipped spec's name (specs/NAME.toml) or a path; the default is mnist_sequences_ctc. Datasets come from
the usual data cache (DLCLI_CACHE), so a spec whose dataset is not built yet also times the build's kernels.
--repo runs the dlcli of another checkout, so before and after are measured by the same script. The run's
child process that compiles ahead on the second core (train/precompile.py) is turned off (DLCLI_PRECOMPILE=thread),
so that every kernel compiles in the process listened to: the total is what compiling costs, not what it delays
the run (benchmarks/cold_start.py measures that).

--timeline runs it as a user does instead (DLCLI_PRECOMPILE=process) and listens in the forked child too: each
process's kernels in the order they compiled, with start and end seconds from the run's start and the thread
that compiled them, and the kernels compiled in both processes (none, when their sharing of the cache works);
where `dlcli train` forks its child at its start, a row for the child's imports and Numba's set-up too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=["mnist_sequences_ctc"], help="spec names or paths")
    parser.add_argument("--repo", type=Path, default=REPO, help="the dlcli checkout to run (default: this one)")
    parser.add_argument("--steps", type=int, default=2, help="training steps in the one epoch")
    parser.add_argument("--threads", type=int, default=2, help="NUMBA/OMP/BLAS threads of the run")
    parser.add_argument("--top", type=int, default=25, help="kernels printed per spec (the JSON has all)")
    parser.add_argument("--timeline", action="store_true",
                        help="run with the child process as a user does; print when each process compiled what")
    parser.add_argument("--json", type=str, default=None, help="also write every kernel's times as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("OUT", "ARGS_JSON"), help=argparse.SUPPRESS)
    return parser.parse_args()


def child(out: Path, train_args: list[str]) -> None:
    """Run `dlcli train` in this process, recording every compile event; write them to out as JSON."""
    from dlcli.cli.main import main, pin_threads

    pin_threads()  # before NumPy loads, as `dlcli` does (numba.core.event imports NumPy)
    from numba.core import event

    records: list[dict] = []
    stack: list[dict] = []
    streams: dict[int, object] = {}

    def append(record: dict) -> None:
        """A forked child's records go to OUT.<pid> as they come (it ends with os._exit, its memory with it)."""
        records.append(record)
        if os.getpid() != parent:
            if os.getpid() not in streams:  # opened here: the child closed every file it inherited
                streams.clear()
                streams[os.getpid()] = open(f"{out}.{os.getpid()}", "a")
            stream = streams[os.getpid()]
            stream.write(json.dumps(record) + "\n")
            stream.flush()

    parent = os.getpid()

    class CompileListener(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            dispatcher = ev.data["dispatcher"]
            py_func = dispatcher.py_func
            stack.append({"kernel": f"{py_func.__module__}.{py_func.__qualname__}",
                          "signature": ", ".join(str(a) for a in ev.data["args"]),
                          "wall0": time.perf_counter(), "cpu0": time.thread_time(), "child_wall": 0.0,
                          "child_cpu": 0.0, "process": "the run" if os.getpid() == parent else "its child",
                          "thread": threading.current_thread().name,
                          "start": time.perf_counter() - start})

        def on_end(self, ev: event.Event) -> None:
            rec = stack.pop()
            wall, cpu = time.perf_counter() - rec.pop("wall0"), time.thread_time() - rec.pop("cpu0")
            rec.update(incl_wall=wall, incl_cpu=cpu, self_wall=wall - rec.pop("child_wall"),
                       self_cpu=cpu - rec.pop("child_cpu"), depth=len(stack), end=time.perf_counter() - start)
            if stack:
                stack[-1]["child_wall"] += wall
                stack[-1]["child_cpu"] += cpu
            append(rec)

    start = time.perf_counter()
    _note_early_child(append, lambda: time.perf_counter() - start)
    event.register("numba:compile", CompileListener())
    sys.argv = ["dlcli", "train", *train_args]
    try:
        main()
    except SystemExit as done:
        if done.code:
            raise
    for path in out.parent.glob(f"{out.name}.*"):  # the forked child's
        records += [json.loads(line) for line in path.read_text().splitlines()]
    out.write_text(json.dumps({"run_wall": time.perf_counter() - start, "kernels": records}))


def _note_early_child(append: Callable[[dict], None], now: Callable[[], float]) -> None:
    """In a checkout whose `dlcli train` forks its child early (train/precompile_fork.py), one more row for that
    child: from its fork to its asking for the spec (its imports and Numba's set-up), and when the spec came.
    Here Numba was imported before the fork (the listener needs it), so a real run's child takes longer."""
    try:
        from dlcli.train import precompile_fork
    except ImportError:  # a checkout without the early fork
        return
    watch_pipe = precompile_fork.watch_pipe

    def watching(fd: int) -> Callable[[], dict]:
        forked, cpu0, wait_for_spec = now(), time.thread_time(), watch_pipe(fd)

        def spec() -> dict:
            ready, cpu = now(), time.thread_time() - cpu0
            got = wait_for_spec()
            append({"kernel": "(early child: imports, Numba's set-up; spec at "
                              f"{now():.2f} s)", "signature": "", "start": forked, "end": ready, "self_cpu": cpu,
                    "incl_cpu": cpu, "self_wall": ready - forked, "incl_wall": ready - forked, "depth": 0,
                    "process": "its child", "thread": threading.current_thread().name, "setup": True})
            return got

        return spec

    precompile_fork.watch_pipe = watching


def measure(spec: Path, args: argparse.Namespace, workdir: Path, graph_data: Path) -> dict:
    from cold_start import spec_overrides  # the same one-epoch run as the cold-start benchmark

    cache, out = Path(tempfile.mkdtemp(dir=workdir, prefix="numba-")), workdir / f"{spec.stem}.json"
    train_args = [str(spec), "--quiet", "--run-dir", str(workdir / f"run-{spec.stem}"),
                  *spec_overrides(spec, graph_data, args.steps)]
    env = {**os.environ, "PYTHONPATH": f"{args.repo.resolve()}{os.pathsep}{Path(__file__).parent}",
           "NUMBA_CACHE_DIR": str(cache),
           # every compile in the one process listened to, unless the timeline of both is wanted
           "DLCLI_PRECOMPILE": "process" if args.timeline else "thread",
           **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    proc = subprocess.run([sys.executable, __file__, "--child", str(out), json.dumps(train_args)], env=env,
                          cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dlcli train {spec} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    kernels = sorted((k for k in result["kernels"] if not k.get("setup")), key=lambda k: -k["self_cpu"])
    setup = [k for k in result["kernels"] if k.get("setup")]
    return {"spec": spec.stem, "run_wall_s": result["run_wall"], "kernels": kernels, "early_child": setup,
            "total_self_wall_s": sum(k["self_wall"] for k in kernels),
            "total_self_cpu_s": sum(k["self_cpu"] for k in kernels),
            "compiled": len(kernels), "dispatchers": len({k["kernel"] for k in kernels})}


def print_table(row: dict, top: int) -> None:
    print(f"\n{row['spec']}: {row['compiled']} compiles of {row['dispatchers']} kernels, total "
          f"{row['total_self_cpu_s']:.2f} s CPU ({row['total_self_wall_s']:.2f} s wall); the run took "
          f"{row['run_wall_s']:.1f} s")
    print("| kernel | signature | self CPU | self wall | incl CPU |")
    print("|---|---|---|---|---|")
    for k in row["kernels"][:top]:
        name = k["kernel"].removeprefix("dlcli.kernels.")
        signature = k["signature"] if len(k["signature"]) <= 90 else k["signature"][:87] + "..."
        print(f"| {name} | {signature} | {k['self_cpu']:.2f} s | {k['self_wall']:.2f} s | {k['incl_cpu']:.2f} s |")
    rest = row["kernels"][top:]
    if rest:
        print(f"| ({len(rest)} more) | | {sum(k['self_cpu'] for k in rest):.2f} s "
              f"| {sum(k['self_wall'] for k in rest):.2f} s | |")
    per_kernel: dict[str, int] = {}
    for k in row["kernels"]:
        per_kernel[k["kernel"]] = per_kernel.get(k["kernel"], 0) + 1
    several = {name.removeprefix("dlcli.kernels."): n for name, n in per_kernel.items() if n > 1}
    print(f"kernels compiled for more than one signature (sigs): {several or 'none'}", flush=True)


def print_timeline(row: dict) -> None:
    """Each process's kernels (those it compiled itself, outermost only) in order, and any compiled twice."""
    kernels = row["kernels"]
    for process in ("the run", "its child"):
        rows = [k for k in [*kernels, *row.get("early_child", [])] if k["process"] == process and k["depth"] == 0]
        print(f"\n{row['spec']}: {process}")
        print("| start | end | thread | kernel |")
        print("|---|---|---|---|")
        for k in sorted(rows, key=lambda k: k["start"]):
            name = k["kernel"].removeprefix("dlcli.kernels.")
            print(f"| {k['start']:.2f} s | {k['end']:.2f} s | {k['thread']} | {name} |")
    compiled: dict[tuple[str, str], set[str]] = {}
    for k in kernels:
        if k["kernel"].startswith("dlcli."):  # Numba's own helpers are not cached: each process compiles its own
            compiled.setdefault((k["kernel"], k["signature"]), set()).add(k["process"])
    twice = sorted(name.removeprefix("dlcli.kernels.") for (name, _), pids in compiled.items() if len(pids) > 1)
    print(f"dlcli kernels compiled in both processes: {twice or 'none'}", flush=True)


def main() -> int:
    args = _parse()
    if args.child:
        child(Path(args.child[0]), json.loads(args.child[1]))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlcli-compile-time-") as folder:
        workdir = Path(folder)
        graph_data = workdir / "graph-data"
        from cold_start import make_spec_data  # the same data files as the cold-start benchmark

        make_spec_data(graph_data)
        for name in args.specs:
            spec = Path(name) if name.endswith(".toml") else SPECS / f"{name}.toml"
            rows.append(measure(spec.resolve(), args, workdir, graph_data))
            print_table(rows[-1], args.top)
            if args.timeline:
                print_timeline(rows[-1])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"benchmark": "compile_time", "repo": str(args.repo.resolve()),
                                               "steps": args.steps, "threads": args.threads, "rows": rows},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
