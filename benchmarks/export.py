"""ONNX export of every shipped spec: export time and file size, then onnxruntime against dlcli predict on the test
split: the largest error, and examples per second with 1 and 2 threads.

Each spec is trained for one short epoch (`--steps` steps: the weights are real, their quality does not matter
here) into a temporary run directory and exported `--repeats` times after one untimed export that imports
onnx (the median time is given; the file is the same every time). The check compares every output of
onnxruntime and dlcli's predict on `--examples` test examples: the largest absolute and relative error over
all outputs (relative over values above 1e-5, as `dlcli export --check` reports it). Throughput is measured in
a fresh process per thread count, with OMP/OpenBLAS/MKL/Numba threads and onnxruntime's intra-op threads all
set to it, both running the same batches (the spec's batch size, as `dlcli predict` does) after one untimed
pass; the median of `--repeats` passes is given, and the ratio is onnxruntime's examples per second over dlcli's.

    DLCLI_DATASETS_MIRROR=../shared/datasets python benchmarks/export.py [--specs digits_mlp ...] \
        [--steps 20] [--examples 1024] [--repeats 5] [--threads 1 2] [--json out.json]

Fashion-MNIST is replaced by MNIST (same shapes) when the mirror has no fashion_mnist/, and says so.
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
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="*", default=None, help="spec names (default: every specs/*.toml)")
    parser.add_argument("--steps", type=int, default=20, help="training steps before the export (default 20)")
    parser.add_argument("--examples", type=int, default=1024, help="test examples compared and timed")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the table gives their median")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    parser.add_argument("--measure", type=str, default=None, help=argparse.SUPPRESS)  # child: a run directory
    return parser.parse_args()


def _train(name: str, work: Path, steps: int, graph_data: Path) -> tuple[Path, str]:
    """A short run of specs/<name>.toml; (its run directory, a note when its data was replaced)."""
    from dlcli.spec.load import load_spec
    from dlcli.train.fit import fit_run

    path = REPO / "specs" / f"{name}.toml"
    spec, note = load_spec(path), ""
    overrides = ["train.epochs=1", f"train.steps_per_epoch={steps}"]
    mirror = Path(os.environ.get("DLCLI_DATASETS_MIRROR", "/nonexistent"))
    if spec.data.dataset == "fashion_mnist" and not (mirror / "fashion_mnist").is_dir():
        overrides.append('data.dataset="mnist"')
        note = "trained on MNIST (no Fashion-MNIST in the mirror)"
    for key in ("train", "test", "validation"):
        if getattr(spec.data, key) is not None:
            overrides.append(f'data.{key}="{graph_data / Path(getattr(spec.data, key)).name}"')
    run = work / name
    fit_run(load_spec(path, overrides), run, [])
    return run, note


def _export_and_check(run: Path, examples: int, repeats: int) -> dict:
    """Export time (median), file size, and the check's largest errors."""
    from dlcli.export import check_export, check_inputs, export_run

    export_run(run)  # untimed: the first export imports onnx and compiles nothing else
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        exporter, source, exported = export_run(run)
        seconds.append(time.perf_counter() - started)
    inputs, _ = check_inputs(source, None, examples)
    report = check_export(exporter, exported, source, inputs)
    values = [o for o in report.outputs if not o.name.endswith(".mask")]
    return {"export_seconds": statistics.median(seconds), "bytes": exported.size, "path": str(exported.path),
            "opset": exported.details["opset"], "examples": report.examples, "passed": report.passed,
            "max_abs": max(o.max_abs for o in values), "max_rel": max(o.max_rel for o in values)}


def _measure(run: Path, threads: int, examples: int, repeats: int) -> dict:
    """Child process: examples per second of dlcli predict and of onnxruntime, on the same batches."""
    from dlcli.export import check_inputs, load_source
    from dlcli.export.onnx import OnnxExporter
    from dlcli.train.loop import predict

    source = load_source(run)
    inputs, _ = check_inputs(source, None, examples)
    count, batch = len(next(iter(inputs.values()))), source.spec.train.batch_size
    exporter = OnnxExporter()
    exported = exporter.write(source, run / "measured.onnx", {})  # the same file the parent timed
    run_onnx = exporter.runner(exported, threads)
    feeds = exporter.feeds(exported, source, inputs)
    batches = [{k: v[start:start + batch] for k, v in feeds.items()} for start in range(0, count, batch)]

    def timed(function: object) -> float:
        function()  # type: ignore[operator]  # untimed: compiles, allocates, warms caches
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return count / statistics.median(times)

    return {"dlcli_per_second": timed(lambda: predict(source.model, inputs, batch)),
            "onnxruntime_per_second": timed(lambda: [run_onnx(b) for b in batches])}


def _table(rows: list[dict], threads: list[int]) -> str:
    head = ["spec", "export s", "bytes", "max abs", "max rel"]
    for t in threads:
        head += [f"dlcli ex/s {t}t", f"ort ex/s {t}t", f"ratio {t}t"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["spec"] + (" *" if row["note"] else ""), f"{row['export_seconds']:.3f}", f"{row['bytes']:,}",
                 f"{row['max_abs']:.2g}", f"{row['max_rel']:.2g}"]
        for t in threads:
            speed = row["threads"][str(t)]
            cells += [f"{speed['dlcli_per_second']:,.0f}", f"{speed['onnxruntime_per_second']:,.0f}",
                      f"{speed['onnxruntime_per_second'] / speed['dlcli_per_second']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"* {row['spec']}: {row['note']}" for row in rows if row["note"]]
    return "\n".join(lines + notes)


def main() -> None:
    args = _parse()
    if args.measure:
        print(json.dumps(_measure(Path(args.measure), args.threads[0], args.examples, args.repeats)))
        return
    shipped = sorted(p.stem for p in (REPO / "specs").glob("*.toml"))
    names = args.specs or shipped
    unknown = [name for name in names if name not in shipped]
    if unknown:  # before any training: a typo should not cost the specs before it
        sys.exit(f"no spec {', '.join(unknown)} in specs/; shipped: {', '.join(shipped)}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        subprocess.run([sys.executable, str(REPO / "specs" / "make_graph_data.py"), "--out", str(work / "data")],
                       check=True, capture_output=True)
        os.environ.setdefault("DLCLI_CACHE", str(work / "cache"))
        for name in names:
            run, note = _train(name, work, args.steps, work / "data")
            row = {"spec": name, "note": note, **_export_and_check(run, args.examples, args.repeats), "threads": {}}
            for t in args.threads:
                env = {**os.environ, **{variable: str(t) for variable in THREAD_VARIABLES}}
                child = subprocess.run([sys.executable, __file__, "--measure", str(run), "--threads", str(t),
                                        "--examples", str(args.examples), "--repeats", str(args.repeats)],
                                       env=env, capture_output=True, text=True, check=True)
                row["threads"][str(t)] = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{name}: done", file=sys.stderr)
    print(_table(rows, args.threads))
    if args.json:
        import onnxruntime

        machine = {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count(), "onnxruntime": onnxruntime.__version__}
        Path(args.json).write_text(json.dumps({"machine": machine, "steps": args.steps, "examples": args.examples,
                                               "repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
