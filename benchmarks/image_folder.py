"""Streaming an image folder against the same images in memory: seconds per epoch, peak memory, the file check.

Writes N PNG files (64x64x3, ten classes, one subfolder each) and the same decoded images as an .npz, then trains
one small convnet on each through `dlcli train --json`, alternating, each run a process of its own:

  in-memory .npz           the reference
  folder, cache "none"     every epoch decodes every file (epoch 1 is the figure the goal is about)
  folder, cache "disk"     epoch 1 decodes and builds the cache; later epochs read the memory-mapped cache

Seconds per epoch come from the runs' epoch events (training only: no validation), peak memory from each
process's maximum resident set and its CPU time (getrusage: on a busy machine the CPU seconds of the whole run
are steadier than its wall-clock epochs), the file check's time from the start event. Each figure is the
median over --repeats runs; each folder epoch is compared with the same epoch of the .npz runs (epoch 1 with
epoch 1, later with later). Goals (issue 15): epoch 1 <= 1.15x, cached epochs <= 1.05x, and
streaming adds <= 300 MB of peak memory.

    python benchmarks/image_folder.py [--images 20000] [--epochs 3] [--repeats 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEC = """name = "image-folder-benchmark"
seed = 1
[data]
train = "{train}"
{extra}
[model]
input = {{ shape = [{size}, {size}, 3] }}
[[model.layers]]
type = "rescaling"
scale = 0.00392156862745098
[[model.layers]]
type = "conv2d"
filters = 16
kernel_size = 3
activation = "relu"
[[model.layers]]
type = "max_pooling2d"
pool_size = 2
[[model.layers]]
type = "conv2d"
filters = 32
kernel_size = 3
activation = "relu"
[[model.layers]]
type = "max_pooling2d"
pool_size = 2
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
optimizer = "rmsprop"
metrics = ["accuracy"]
epochs = {epochs}
batch_size = 64
"""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64, help="height and width of every image")
    parser.add_argument("--epochs", type=int, default=3, help="epochs a run trains (cached epochs: 2 on)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind, alternating; medians are shown")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and Numba threads of every run")
    parser.add_argument("--decode-threads", type=int, default=None, help="data.decode_threads (default: dlcli's)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the images here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def write_images(root: Path, count: int, size: int) -> Path:
    """`count` PNG files in ten class folders (smooth patterns with noise, so they compress as photos do), and
    photos.npz holding the same images decoded; written once per workdir."""
    from PIL import Image

    npz = root / "photos.npz"
    if npz.is_file():
        return npz
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 10
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    images = np.empty((count, size, size, 3), np.uint8)
    for index in range(count):  # a benchmark's data, written once: one file each
        label = labels[index]
        wave = np.sin(2 * np.pi * (label + 1) * ramp[:, None] + rng.uniform(0, 6)) * np.cos(3 * ramp[None, :])
        base = np.stack([wave, np.roll(wave, label, axis=0), wave.T], axis=2) * 100 + 128
        images[index] = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        folder = root / "photos" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(folder / f"{index:06d}.png")
    np.savez(npz, x=images, y=labels)
    return npz


def run(spec: Path, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """One `dlcli train --json` process: its epoch seconds, start event and peak resident memory (MB)."""
    run_dir = workdir / "runs" / f"run-{len(list((workdir / 'runs').iterdir()))}"
    with open(workdir / "events.jsonl", "w") as out, open(workdir / "stderr.txt", "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(spec), "--json", "--run-dir",
                                    str(run_dir)], env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own resource usage: its peak memory
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"dlcli train failed:\n{(workdir / 'stderr.txt').read_text()}")
    events = [json.loads(line) for line in (workdir / "events.jsonl").read_text().splitlines()]
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"epochs": [event["seconds"] for event in events if event["event"] == "epoch"],
            "start": next(event for event in events if event["event"] == "start"), "peak_mb": _peak_mb(usage),
            "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _peak_mb(usage: Any) -> float | None:
    return None if usage is None else usage.ru_maxrss / 1024  # Linux reports kilobytes


def main() -> None:
    """Write the data, run every kind --repeats times, print one table, and write --json."""
    args = _parse()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dlcli-image-folder-"))
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    npz = write_images(workdir, args.images, args.size)
    threads = {name: str(args.threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "NUMBA_NUM_THREADS")}
    env = {**os.environ, **threads, "DLCLI_CACHE": str(workdir / "cache"), "CI": "true",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    decode = f"decode_threads = {args.decode_threads}\n" if args.decode_threads else ""
    folder_keys = f"image_size = [{args.size}, {args.size}]\n{decode}"
    specs = {"npz": (npz, ""), "none": (workdir / "photos", folder_keys + 'cache = "none"'),
             "disk": (workdir / "photos", folder_keys + 'cache = "disk"')}
    paths = {}
    for kind, (train, extra) in specs.items():
        paths[kind] = workdir / f"{kind}.toml"
        paths[kind].write_text(SPEC.format(train=train, extra=extra, size=args.size, epochs=args.epochs))
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in specs}
    for _ in range(args.repeats):
        for kind in specs:
            if kind == "disk":
                shutil.rmtree(workdir / "cache", ignore_errors=True)  # epoch 1 builds it again
            results[kind].append(run(paths[kind], workdir, env))
    report = summarize(results, args)
    print_table(report, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


def summarize(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """Medians over the repeats: epoch seconds, ratios to the .npz epoch, peak memory and its excess, check time."""
    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    # each folder epoch against the same epoch of the .npz runs: epoch 1 of both pays the same one-time costs
    # (kernels loaded from Numba's cache, first allocations), so only the data path differs
    first = median([r["epochs"][0] for r in results["npz"]])
    rows = {
        "in-memory .npz, epoch 1": first,
        "folder, epoch 1 (cache none)": median([r["epochs"][0] for r in results["none"]]),
        "folder, epoch 1 (cache disk, building)": median([r["epochs"][0] for r in results["disk"]]),
    }
    references = dict.fromkeys(rows, first)
    if args.epochs > 1:
        later = median([statistics.median(r["epochs"][1:]) for r in results["npz"]])
        rows["in-memory .npz, later epochs"] = later
        rows["folder, later epochs (cache none)"] = median([statistics.median(r["epochs"][1:])
                                                            for r in results["none"]])
        rows["folder, later epochs (cache disk)"] = median([statistics.median(r["epochs"][1:])
                                                            for r in results["disk"]])
        references.update(dict.fromkeys(list(rows)[3:], later))
    ratios = {name: value / references[name] for name, value in rows.items()}
    peaks = {kind: median([r["peak_mb"] for r in runs]) for kind, runs in results.items()
             if all(r["peak_mb"] is not None for r in runs)}
    check = median([r["start"].get("file_check_seconds", float("nan")) for r in results["none"]])
    # the whole process's CPU time (user + system): less disturbed than seconds by other work on the machine
    cpu = {kind: median([r["cpu_seconds"] for r in runs]) for kind, runs in results.items()}
    return {"images": args.images, "size": args.size, "threads": args.threads, "repeats": args.repeats,
            "seconds_per_epoch": rows, "ratio_to_npz": ratios,
            "peak_mb": peaks, "streaming_extra_mb": {kind: peaks[kind] - peaks["npz"] for kind in ("none", "disk")
                                                     if kind in peaks and "npz" in peaks},
            "file_check_seconds": check, "cpu_seconds_per_run": cpu,
            "goals": {"epoch 1 <= 1.15x": ratios["folder, epoch 1 (cache none)"] <= 1.15,
                      "cached epochs <= 1.05x": ratios.get("folder, later epochs (cache disk)", float("inf")) <= 1.05,
                      "extra memory <= 300 MB": all(v <= 300 for v in
                                                    [peaks.get("none", 0) - peaks.get("npz", 0),
                                                     peaks.get("disk", 0) - peaks.get("npz", 0)])}}


def print_table(report: dict[str, Any], args: argparse.Namespace) -> None:
    """The one table, then the file check and the goals."""
    print(f"{args.images:,} PNG files {args.size}x{args.size}x3, 10 classes, batch 64, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"{'':42s} {'s/epoch':>9s} {'ratio':>7s}")
    for name, seconds in report["seconds_per_epoch"].items():
        print(f"{name:42s} {seconds:9.2f} {report['ratio_to_npz'][name]:7.3f}")
    labels = {"npz": "in-memory .npz", "none": "folder, cache none", "disk": "folder, cache disk"}
    for kind, peak in report["peak_mb"].items():
        extra = report["streaming_extra_mb"].get(kind)
        print(f"peak memory {labels[kind]:30s} {peak:9.0f} MB" + (f"  ({extra:+.0f} MB)" if extra is not None
                                                                    else ""))
    print("CPU seconds per run (user + system): " + ", ".join(f"{labels[kind]} {seconds:.1f}" for kind, seconds
                                                           in report["cpu_seconds_per_run"].items()))
    print(f"file check before the first step: {report['file_check_seconds']:.2f} s for {args.images:,} files")
    print("goals: " + ", ".join(f"{goal}: {'met' if met else 'NOT met'}" for goal, met in report["goals"].items()))


if __name__ == "__main__":
    main()
