"""Seconds to load a large numeric CSV into float32 features and target: dlcli's readers against pandas.read_csv.

Workload: a CSV of `--rows` rows (default 1,000,000) x `--columns` numeric columns (default 20: 19 features and
a target), written once to a temporary folder with 6 significant digits, about 170 MB. Timed, each the median of
`--repeats` loads, in this order in one process:

  pandas        pandas.read_csv(path) (its C parser), then .to_numpy(float32): the reference of the ratios
  dlcli         read_csv_examples, the CSV reader's path: a large file of numbers goes to the Numba reader
                (data/csv_numbers.py: the file mapped, blocks of lines parsed on --threads threads)
  dlcli pyarrow the same with the Numba reader off: pyarrow.csv reads the file (every file with text columns)
  dlcli numpy   and with pyarrow hidden too: NumPy's loadtxt reads the numbers
  dlcli careful with --careful: the csv module line by line (what every file took before; now only files the
                fast readers give up on, and the messages); minutes and several GB at 1,000,000 rows

pandas and pyarrow are benchmark dependencies (`pip install -e '.[bench,parquet]'`), not dlcli's. The goal:
dlcli's ratio to pandas at most 1.0.

    python benchmarks/csv_load.py [--rows 1000000] [--columns 20] [--repeats 5] [--threads 2] [--careful]
                                  [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CSV (default 1,000,000)")
    parser.add_argument("--columns", type=int, default=20, help="numeric columns, the last one the target")
    parser.add_argument("--repeats", type=int, default=5, help="timed loads per reader (the median is shown)")
    parser.add_argument("--threads", type=int, default=2, help="threads pyarrow may use (default 2)")
    parser.add_argument("--careful", action="store_true", help="also time the careful reader (slow, memory-hungry)")
    parser.add_argument("--json", type=str, default=None, help="also write the table as JSON here")
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from dlcli.data import csv_numbers  # noqa: E402
from dlcli.data.csv_examples import CsvRecipe, read_csv_examples  # noqa: E402
from dlcli.data.csv_table import _careful_table  # noqa: E402


def _write_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [f"x{j}" for j in range(ARGS.columns - 1)] + ["target"]
    with open(path, "w") as handle:
        handle.write(",".join(names) + "\n")
        for start in range(0, ARGS.rows, 100_000):  # in blocks, so writing stays within memory
            block = rng.normal(size=(min(100_000, ARGS.rows - start), ARGS.columns))
            np.savetxt(handle, block, delimiter=",", fmt="%.6g")


def _median_seconds(load, check) -> float:
    times = []
    for _ in range(ARGS.repeats):
        start = time.perf_counter()
        result = load()
        times.append(time.perf_counter() - start)
        check(result)
    return statistics.median(times)


def _dlcli(path: Path):
    read = read_csv_examples(path, CsvRecipe(target="target"))
    return np.ascontiguousarray(read.x, dtype=np.float32), read.y.astype(np.float32)  # as the CSV reader does


def _without_numba_reader(load):
    def run():
        saved = csv_numbers.MIN_BYTES
        csv_numbers.MIN_BYTES = 1 << 62  # no file is large enough: the next reader takes it
        try:
            return load()
        finally:
            csv_numbers.MIN_BYTES = saved
    return run


def _without_pyarrow(load):
    def run():
        saved = sys.modules.get("pyarrow")
        sys.modules["pyarrow"] = None  # type: ignore[assignment] - `import pyarrow` now raises ImportError
        try:
            return load()
        finally:
            if saved is None:
                del sys.modules["pyarrow"]
            else:
                sys.modules["pyarrow"] = saved
    return run


def main() -> None:
    import pandas
    import pyarrow

    pyarrow.set_cpu_count(ARGS.threads)
    pyarrow.set_io_thread_count(ARGS.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        _write_csv(path)
        size_mb = path.stat().st_size / 1e6
        expected = pandas.read_csv(path).to_numpy(np.float32)

        def same(result) -> None:
            x, y = result
            np.testing.assert_array_equal(x, expected[:, :-1])
            np.testing.assert_array_equal(y, expected[:, -1])

        _dlcli(path)  # untimed: the Numba reader's kernels compile (or load from the cache) once
        rows = [("pandas", _median_seconds(lambda: _split(pandas.read_csv(path).to_numpy(np.float32)), same)),
                ("dlcli", _median_seconds(lambda: _dlcli(path), same)),
                ("dlcli pyarrow", _median_seconds(_without_numba_reader(lambda: _dlcli(path)), same)),
                ("dlcli numpy", _median_seconds(_without_numba_reader(_without_pyarrow(lambda: _dlcli(path))),
                                                same))]
        if ARGS.careful:
            rows.append(("dlcli careful", _median_seconds(lambda: _careful(path), same)))
    reference = rows[0][1]
    print(f"{ARGS.rows:,} rows x {ARGS.columns} columns ({size_mb:.0f} MB), {ARGS.threads} threads, median of "
          f"{ARGS.repeats}; pandas {pandas.__version__}, pyarrow {pyarrow.__version__}")
    print(f"{'reader':>14} {'seconds':>9} {'x pandas':>9}")
    for name, seconds in rows:
        print(f"{name:>14} {seconds:9.3f} {seconds / reference:9.2f}")
    if ARGS.json:
        with open(ARGS.json, "w") as handle:
            json.dump({"benchmark": "csv_load", "rows": ARGS.rows, "columns": ARGS.columns, "megabytes": size_mb,
                       "threads": ARGS.threads, "repeats": ARGS.repeats, "numpy": np.__version__,
                       "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
                       "python": platform.python_version(),
                       "results": [{"reader": name, "seconds": seconds, "ratio_to_pandas": seconds / reference}
                                   for name, seconds in rows]}, handle, indent=2)


def _split(table: np.ndarray):
    return table[:, :-1], table[:, -1]


def _careful(path: Path):
    table = _careful_table(path)
    values = table.numbers(list(range(len(table.header))), allow_missing=False)
    return _split(values.astype(np.float32))


if __name__ == "__main__":
    main()
