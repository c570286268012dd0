"""The Numba reader of large CSV files of numbers (data/csv_numbers.py) gives exactly the careful reader's numbers
and lines, every value the nearest double (as Python's float() reads the cell), and leaves every other file to
the other readers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import csv_numbers
from dlcli.data.csv_examples import CsvRecipe, read_csv_examples, read_table_examples
from dlcli.data.csv_table import _careful_table, read_csv_table
from dlcli.data.table import MISSING_CELLS

from tests.data.test_csv_fast import FILES

READ_HERE = {
    **{name: FILES[name] for name in ("numbers", "crlf and bom", "blank lines", "missing cells",
                                      "spaces around numbers")},
    "no line break at the end": "a,b\n1,2\n3,4",
    "blank lines before the header": "\n\r\na,b\n1,2\n",
    "signs, points, exponents": "a,b,c\n+1,-0,.5\n5.,-.25e+2,1E-3\n-0.0,7e22,1e-22\n",
    "cells for float()": "a,b\n1e400,0.1234567890123456789\n123456789012345678901,9007199254740993\n",
    "every missing spelling": "a\n" + "\n".join(cell if cell else " " for cell in MISSING_CELLS) + "\n",
    "one column": "x\n1\n2\n\n3\n",
}
LEFT_TO_OTHERS = {
    **{name: FILES[name] for name in ("class names", "booleans and dates", "quoted line break", "quoted commas",
                                      "jena date column")},
    "a row too short": "a,b\n1,2\n3\n",
    "a row too long": "a,b\n1,2\n3,4,5\n",
    "a lone sign": "a,b\n1,-\n",
    "two points": "a,b\n1,1.2.3\n",
    "an exponent without digits": "a,b\n1,1e\n",
    "underscores": "a,b\n1,1_000\n",
    "not ascii": "a,b\n1,\u0661\n",
    "a header alone": "a,b\n",
    "no line break anywhere": "a,b",
}


def _text(name: str) -> str:
    return READ_HERE[name] if name in READ_HERE else LEFT_TO_OTHERS[name]


def _careful(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    table = _careful_table(path)
    return table.header, table.numbers(list(range(len(table.header))), allow_missing=True,
                                       allow_infinite=True), table.lines


@pytest.mark.parametrize("name", sorted(READ_HERE))
def test_a_file_of_numbers_reads_as_the_careful_reader_reads_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(_text(name), encoding="utf-8", newline="")
    read = csv_numbers.read_numbers(path.read_bytes(), MISSING_CELLS, min_bytes=0)
    assert read is not None
    header, values, lines = _careful(path)
    assert read[0] == header
    np.testing.assert_array_equal(read[1], values)
    np.testing.assert_array_equal(read[2], lines)


def test_cells_are_the_nearest_double_and_missing_cells_nan(tmp_path: Path) -> None:
    read = csv_numbers.read_numbers(_text("signs, points, exponents").encode(), MISSING_CELLS, min_bytes=0)
    assert read is not None
    np.testing.assert_array_equal(read[1], [[1.0, -0.0, 0.5], [5.0, -25.0, 0.001], [-0.0, 7e22, 1e-22]])
    assert np.signbit(read[1][[0, 2], [1, 0]]).all()  # -0 stays negative zero, as float("-0") is
    odd = csv_numbers.read_numbers(_text("cells for float()").encode(), MISSING_CELLS, min_bytes=0)
    assert odd is not None
    assert odd[1].tolist() == [[float("inf"), 0.1234567890123456789],
                               [123456789012345678901.0, 9007199254740992.0]]
    missing = csv_numbers.read_numbers(_text("every missing spelling").encode(), MISSING_CELLS, min_bytes=0)
    assert missing is not None and np.isnan(missing[1]).all() and len(missing[1]) == len(MISSING_CELLS)


@pytest.mark.parametrize("name", sorted(LEFT_TO_OTHERS))
def test_anything_else_is_left_to_the_other_readers(name: str) -> None:
    assert csv_numbers.read_numbers(_text(name).encode(), MISSING_CELLS, min_bytes=0) is None


@pytest.mark.parametrize("form", ["%.6g", "%.9g", "%.15g", "%.17g", "%r", "%.3e", "%.10f", "%d"])
def test_every_value_is_what_float_reads_from_its_cell(form: str) -> None:
    rng = np.random.default_rng(7)
    numbers = rng.normal(size=(3000, 4)) * 10.0 ** rng.integers(-30, 30, size=(3000, 4))
    if form == "%d":
        numbers = rng.integers(-10**18, 10**18, size=(3000, 4))
    cells = [[(repr(float(x)) if form == "%r" else form % x) for x in row] for row in numbers.tolist()]
    text = "a,b,c,d\n" + "".join(",".join(row) + "\n" for row in cells)
    read = csv_numbers.read_numbers(text.encode(), MISSING_CELLS, min_bytes=0)
    assert read is not None
    assert read[1].tolist() == [[float(cell) for cell in row] for row in cells]


def test_blocks_on_several_threads_give_the_rows_and_lines_of_one(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    rows = [",".join(f"{x:.5g}" for x in row) for row in rng.normal(size=(500, 3)).tolist()]
    rows[100:100] = ["", "\r"]  # blank lines inside a block, and a last line without a line break
    text = "x,y,z\r\n" + "\n".join(rows)
    one = csv_numbers.read_numbers(text.encode(), MISSING_CELLS, min_bytes=0)
    monkeypatch.setattr(csv_numbers, "MIN_BLOCK", 256)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "5")
    assert len(csv_numbers._blocks(text.encode(), 7, text.rfind("\n") + 1)) == 5
    several = csv_numbers.read_numbers(text.encode(), MISSING_CELLS, min_bytes=0)
    assert one is not None and several is not None
    np.testing.assert_array_equal(one[1], several[1])
    np.testing.assert_array_equal(one[2], several[2])
    assert several[2][[0, 99, 100, -1]].tolist() == [2, 101, 104, 503]


def test_read_csv_table_takes_a_large_file_of_numbers_here_and_examples_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_numbers, "MIN_BYTES", 1000)
    rng = np.random.default_rng(5)
    values = rng.normal(size=(400, 4))
    path = tmp_path / "big.csv"
    np.savetxt(path, values, delimiter=",", fmt="%.7g", header="a,b,c,label", comments="")
    table = read_csv_table(path)
    assert table.block is not None  # read by the kernels
    read = read_csv_examples(path, CsvRecipe(target="label"))
    careful = _careful(path)[1]
    np.testing.assert_array_equal(read.x, careful[:, :3])
    np.testing.assert_array_equal(read.y, careful[:, 3])
    # the features are a view of the table's matrix: no copy before the float32 one
    assert np.shares_memory(read_table_examples(table, CsvRecipe(target="label")).x, table.block)
    gz = tmp_path / "big.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_csv_table(gz).block is None  # gzip: the other readers decompress it
    np.testing.assert_array_equal(read_csv_examples(gz, CsvRecipe(target="label")).x, careful[:, :3])


def test_too_many_cells_for_float_leave_the_file_to_the_other_readers(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_numbers, "OTHER_CELLS", 4)
    text = "a,b\n" + "0.12345678901234567,1\n" * 10
    assert csv_numbers.read_numbers(text.encode(), MISSING_CELLS, min_bytes=0) is None
    monkeypatch.setattr(csv_numbers, "MIN_BYTES", 10)
    path = tmp_path / "t.csv"
    path.write_text(text)
    np.testing.assert_array_equal(read_csv_table(path).columns[0], [0.12345678901234567] * 10)
