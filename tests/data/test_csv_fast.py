"""The fast CSV readers (pyarrow.csv, else NumPy) give the careful reader's table, and leave it every file they
cannot read exactly, so that messages still name the line."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.data.csv_examples import CsvRecipe, read_csv_examples
from dlcli.data.csv_fast import fast_columns
from dlcli.data.csv_table import MISSING_CELLS, _careful_table, read_csv_table
from dlcli.errors import DataError

FILES = {
    "numbers": "a,b,label\n1,2.5,0\n-3,4e-3,1\n5,6,1\n",
    "crlf and bom": "\ufeffa,b,label\r\n1,2,0\r\n3,4,1\r\n",
    "blank lines": "a,b,label\n\n1,2,0\n\n\n3,4,1\n\n",
    "missing cells": "a,b,label\n1,,0\nNA,4,1\n5, NA ,1\nnan,null,0\n",
    "class names": "a,b,label\n1,2,cat\n3,4,dog\n5,6, cat\n",
    "booleans and dates": "a,when,flag,label\n1,2020-01-01,true,0\n2,2020-01-02,false,1\n",
    "quoted line break": 'a,b,label\n1,2,0\n"3\n",4,1\n5,6,1\n',
    "quoted commas": 'a,text,label\n1,"x, y",0\n2,"say ""hi""",1\n',
    "spaces around numbers": "a,b,label\n 1 ,2,0\n3, 4.5 ,1\n",
    "jena date column": '"Date Time",p,T\n01.01.2009 00:10:00,996.52,-8.02\n01.01.2009 00:20:00,996.57,-8.41\n',
}


def _same_table(path: Path) -> None:
    fast, careful = read_csv_table(path), _careful_table(path)
    assert fast.header == careful.header
    np.testing.assert_array_equal(fast.lines, careful.lines)
    for j in range(len(fast.header)):
        if fast.is_numeric(j):
            np.testing.assert_array_equal(fast.columns[j], careful.numbers([j], allow_missing=True)[:, 0])
        else:
            np.testing.assert_array_equal(fast.columns[j], careful.columns[j])


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_fast_reader_gives_the_careful_readers_table(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(FILES[name], encoding="utf-8")
    _same_table(path)


@pytest.mark.parametrize("name", sorted(FILES))
def test_without_pyarrow_numpy_or_the_careful_reader_gives_the_same_table(tmp_path: Path, name: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError, as when not installed
    path = tmp_path / "t.csv"
    path.write_text(FILES[name], encoding="utf-8")
    _same_table(path)


def test_numbers_are_read_as_numbers_by_the_fast_reader(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"a,b,label\n1,,0\nNA,4,1\nnan,null,0\n"))
    table = read_csv_table(path)
    assert all(table.is_numeric(j) for j in range(3))  # pyarrow read them; nothing went through strings
    assert np.isnan(table.columns[0][[1, 2]]).all() and table.lines.tolist() == [2, 3, 4]


def test_a_file_of_numbers_without_pyarrow_is_read_by_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    path = tmp_path / "t.csv"
    path.write_text(FILES["blank lines"])
    table = read_csv_table(path)
    assert all(table.is_numeric(j) for j in range(3)) and table.lines.tolist() == [3, 6]


def test_messages_quote_the_cell_as_written_when_the_fast_reader_read_it(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,0\n3,1E+39,1\n")
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'b': '1E\+39' is too large for float32"):
        read_csv_examples(path, CsvRecipe(target="label"))
    path.write_text("a,b,label\n1,2,0\n5,NULL,1\n")
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'b': expected a number, found 'NULL', a "
                                        r"missing value \(1 missing cell in 1 row\)"):
        read_csv_examples(path, CsvRecipe(target="label"))


def test_dropped_rows_keep_their_cells_for_messages(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n,2,0\n3,inf,1\n")
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'b': 'inf' is infinite"):
        read_csv_examples(path, CsvRecipe(target="label", missing="drop_rows"))


def test_a_row_of_another_width_is_named_by_the_careful_reader(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,0\n\n3,4\n")
    with pytest.raises(DataError, match=r"t.csv, line 4: expected 3 cells like the first row, found 2"):
        read_csv_table(path)


@pytest.mark.parametrize("raw", [b"a,b,label\n", b"\n  a,b,label  \r\n\n \n", b"a,b,label"])
def test_a_header_alone_never_reaches_pyarrow(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow's threaded CSV reader mishandles a file of no rows (apache/arrow#38676); a validate of such a file
    # once ended its process with "terminate called without an active exception" (SIGABRT) after its error
    pacsv = pytest.importorskip("pyarrow.csv")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyarrow read a file of no rows")

    monkeypatch.setattr(pacsv, "read_csv", refuse)
    assert fast_columns(raw, MISSING_CELLS) is None
