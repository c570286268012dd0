"""The parquet reader: typed columns read by name through pyarrow, as CSV columns are, with rows named in messages;
a run trained on parquet predicts on a file whose columns stand in another order; without pyarrow, the install
command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli.data.readers.parquet_file import read_parquet_table
from dlcli.errors import DataError, SpecError


def write(path: Path, columns: dict[str, list | pa.Array]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_columns_are_numbers_or_cells_by_their_type(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", {
        "count": pa.array([1, None, 3], pa.int32()), "ratio": [0.5, 2.0, None], "flag": [True, False, True],
        "species": pa.array(["cat", "dog", None]).dictionary_encode(), "day": pa.array([0, 1, 2], pa.date32())})
    table = read_parquet_table(path)
    assert table.header == ["count", "ratio", "flag", "species", "day"]
    np.testing.assert_array_equal(table.columns[0], [1, np.nan, 3])
    np.testing.assert_array_equal(table.columns[1], [0.5, 2.0, np.nan])
    np.testing.assert_array_equal(table.columns[2], [1, 0, 1])
    assert table.columns[3].tolist() == ["cat", "dog", ""]  # a null label is a missing cell
    assert table.columns[4].tolist() == ["1970-01-01", "1970-01-02", "1970-01-03"]
    assert table.lines is None and table.where(2, 1) == f"{path}, row 2, column 'ratio'"


def test_problems_name_the_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", {"a": ["1", "2", "x"], "label": [0, 1, 0]})
    table = read_parquet_table(path)
    with pytest.raises(DataError, match=r"t.parquet, row 2, column 'a': expected a number, found 'x'"):
        table.numbers([0], allow_missing=False)
    nested = write(tmp_path / "n.parquet", {"a": [[1, 2], [3]], "label": [0, 1]})
    with pytest.raises(DataError, match=r"n.parquet, column 'a' holds list<.*: int64> values; dlcli reads "
                                        r"columns of numbers or of text"):
        read_parquet_table(nested)
    empty = write(tmp_path / "e.parquet", {"a": pa.array([], pa.float64())})
    with pytest.raises(DataError, match=r"e.parquet holds no examples \(0 rows, 1 column"):
        read_parquet_table(empty)
    broken = tmp_path / "b.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"b.parquet is not a readable parquet file .* truncated or corrupt"):
        read_parquet_table(broken)


def test_without_pyarrow_the_error_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "t.parquet", {"a": [1.0]})
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError, as when not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SpecError, match=r"t.parquet: reading .parquet files needs pyarrow, which is not "
                                        r"installed; install it with pip install 'dlcli\[parquet\]'"):
        read_parquet_table(path)


def test_a_run_trained_on_parquet_matches_columns_by_name_in_eval_and_predict(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).round(3)
    species = np.where(x[:, 0] > 0, "cat", "dog")
    write(tmp_path / "train.parquet", {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "species": species.tolist()})
    # the same examples with the columns in another order, one more column, and no target
    write(tmp_path / "new.parquet", {"extra": np.zeros(64), "c": x[:, 2], "a": x[:, 0], "b": x[:, 1]})
    Path("spec.toml").write_text(
        'name = "pq"\nseed = 0\n[data]\ntrain = "train.parquet"\ntarget = "species"\n[model]\ninput = { shape = '
        '[3] }\n[[model.layers]]\ntype = "dense"\nunits = 2\nactivation = "softmax"\n[train]\nloss = '
        '"sparse_categorical_crossentropy"\nmetrics = ["accuracy"]\nepochs = 30\nbatch_size = 16\n'
        'optimizer = { type = "adam", learning_rate = 0.05 }\n')
    trained = CliRunner().invoke(cli, ["train", "spec.toml", "--run-dir", "run", "--quiet"])
    assert trained.exit_code == 0, trained.output
    evaluated = json.loads(CliRunner().invoke(cli, ["eval", "run", "--data", "train.parquet", "--json"])
                           .output.splitlines()[-1])
    assert evaluated["accuracy"] > 0.9
    predicted = CliRunner().invoke(cli, ["predict", "run", "new.parquet", "--json"])
    labels = [json.loads(line)["label"] for line in predicted.output.splitlines()]
    assert np.mean(np.array(labels) == species) == pytest.approx(evaluated["accuracy"])
    write(tmp_path / "renamed.parquet", {"a": x[:, 0], "B": x[:, 1], "c": x[:, 2]})
    refused = CliRunner().invoke(cli, ["predict", "run", "renamed.parquet"])
    assert refused.exit_code == 3 and "renamed.parquet has no column 'b'" in refused.output
