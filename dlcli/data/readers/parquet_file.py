"""The parquet reader: a table of typed, named columns read through pyarrow (the optional dlcli[parquet]), its
columns found by name as a CSV file's are; see table_reader.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli import registry
from dlcli.data.files import existing_file, unreadable
from dlcli.data.readers.table_reader import TableReader
from dlcli.data.table import Table
from dlcli.errors import DataError, SpecError

INSTALL_COMMAND = "pip install 'dlcli[parquet]'"


@registry.readers.register("parquet")
class ParquetReader(TableReader):
    """A parquet table, its columns named by data.features and data.target (needs dlcli[parquet])."""

    suffixes = (".parquet", ".pq")
    kind = "a parquet file"

    def table(self, path: Path) -> Table:
        """The file's columns, every problem named by its row (counting from 0)."""
        return read_parquet_table(path)


def read_parquet_table(path: str | Path) -> Table:
    """A parquet file as a Table: numbers, booleans and decimals as float64 (NaN where null), text, categories,
    dates and times as their cells ("" where null, a missing cell); a column of lists or structs is a DataError."""
    path = existing_file(path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SpecError(f"{path}: reading .parquet files needs pyarrow, which is not installed; install it with "
                        f"{INSTALL_COMMAND}, or save the table as .csv") from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise unreadable(path, err, "a readable parquet file") from None
    if table.num_columns == 0 or table.num_rows == 0:
        raise DataError(f"{path} holds no examples ({table.num_rows:,} rows, {table.num_columns:,} columns): "
                        f"expected a column per feature and target and a row per example")
    columns = [_column(path, name, column) for name, column in zip(table.column_names, table.columns)]
    return Table(path, [str(name) for name in table.column_names], columns, None)


def _column(path: Path, name: str, column: Any) -> np.ndarray:
    """One column as float64 numbers or as unicode cells."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):  # a categorical column: its values, as strings or numbers
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or \
            pa.types.is_decimal(kind) or pa.types.is_null(kind):
        numbers = column.cast(pa.float64())
        if numbers.null_count:
            numbers = pc.fill_null(numbers, float("nan"))
        return numbers.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_temporal(kind):
        cells = pc.fill_null(column.cast(pa.string()), "")  # a null is a missing cell, as an empty CSV cell is
        return np.asarray(cells.to_numpy(zero_copy_only=False), dtype=str)
    raise DataError(f"{path}, column {name!r} holds {kind} values; dlcli reads columns of numbers or of text: "
                    f"flatten it into columns of those, or leave it out of data.features")
