"""The CSV reader: feature columns found by name (the training file's, for every later file), missing cells by
data.missing and filled as training filled them, class names to ids; or, for a text model, the data.text column."""

from __future__ import annotations

from pathlib import Path

from dlcli import registry
from dlcli.data.csv_table import read_csv_table
from dlcli.data.readers.table_reader import TableReader
from dlcli.data.table import Table


@registry.readers.register("csv")
class CsvReader(TableReader):
    """A CSV table with a header row, its columns named by data.features and data.target."""

    suffixes = (".csv", ".csv.gz")
    kind = "a CSV file"

    def table(self, path: Path) -> Table:
        """The file's columns, every problem named by its line."""
        return read_csv_table(path)
