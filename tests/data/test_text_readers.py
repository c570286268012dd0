"""Text readers: a CSV text column (quoted commas, quotes, line breaks) and .txt files of one text a line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlcli.data import read_csv_text, read_text_lines
from dlcli.errors import DataError


def test_csv_text_column_keeps_quoted_commas_quotes_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('id,review,label\n1,"Great, really ""great"" film",1\n2,"two\nlines",0\n\n3,,1\n', encoding="utf-8")
    texts, labels = read_csv_text(path, "review", "label")
    assert texts.tolist() == ['Great, really "great" film', "two\nlines", ""] and texts.dtype.kind == "U"
    assert labels is not None and labels.dtype == np.float32 and labels.tolist() == [1.0, 0.0, 1.0]
    only_texts, none = read_csv_text(path, "review")
    assert none is None and only_texts.tolist() == texts.tolist()


def test_csv_text_errors_name_the_column_and_cell(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("review,label\nfine,1\nbad,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'reveiw' \\(did you mean 'review'\\?\\)"):
        read_csv_text(path, "reveiw", "label")
    with pytest.raises(DataError, match="line 3, column 'label': expected a number, found 'maybe'"):
        read_csv_text(path, "review", "label")


def test_text_lines_are_one_example_each(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes("\ufefffirst, line\r\n\nthird\fstill third\n".encode())
    assert read_text_lines(path).tolist() == ["first, line", "", "third\fstill third"]
    path.write_text("no final newline", encoding="utf-8")
    assert read_text_lines(path).tolist() == ["no final newline"]


@pytest.mark.parametrize("content, message", [(b"", "is empty"),
                                              (b"\xff\xfe bad", "line 1: byte 0xff is not UTF-8 .invalid start byte.; "
                                                                "save it as UTF-8")])
def test_unreadable_text_files_are_data_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_text_lines(path)
