"""What the readers of tables of named columns share (CSV, parquet): feature columns found by name (the training
file's, for every later file), missing cells by data.missing and filled as training filled them, class names to
ids; or, for a text model, the data.text column."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dlcli.data.csv_examples import CsvRecipe, fill_missing, read_table_examples
from dlcli.data.readers.reader import Examples, Reader
from dlcli.data.readers.request import ReadRequest, single_name
from dlcli.data.table import MISSING_CELLS, Table
from dlcli.errors import DataError, SpecError


class TableReader(Reader):
    """Base of the readers of a table of named columns: a subclass reads its file into a Table."""

    kind: ClassVar[str] = "a table"  # what the file is, for messages: "a CSV file"

    def table(self, path: Path) -> Table:
        """The file's columns."""
        raise NotImplementedError

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """A split from the file, or (inputs only) its feature or text column with each example's place."""
        return self._inputs(path, request) if request.targets is None else self._split(path, request)

    def describe(self, path: Path, request: ReadRequest) -> dict[str, Any]:
        """The table: rows, columns, and which columns hold text, missing cells (how many) or one value only."""
        return describe_table(self.table(path))

    def _split(self, path: Path, request: ReadRequest) -> Examples:
        """Inputs and targets: feature columns by name (learned from the training file), missing cells by
        data.missing, class names to ids."""
        assert request.targets is not None
        data, schema = request.data, request.schema
        if data.target is None:
            raise SpecError(f"data.target: {path.name} is {self.kind}: name its target column, e.g. target = "
                            f"\"label\"")
        input_name, output_name = single_name(request.inputs, "input"), single_name(request.targets, "output")
        takes_text = request.inputs[input_name].takes_text
        if takes_text and data.text is None:
            raise SpecError(f"data.text: the model takes text: name the column of {path.name} that holds it, "
                            f"e.g. text = \"review\"")
        if not takes_text and data.text is not None:
            raise SpecError(f"data.text: the model's input is numeric (dtype = "
                            f"\"{request.inputs[input_name].dtype}\"); to feed it text, give it dtype = \"string\", "
                            f"shape = [1] and a text_vectorization layer, or name numeric columns in data.features")
        slot = request.targets[output_name]
        column = f"column {data.target!r}"
        read = read_table_examples(self.table(path), CsvRecipe(
            features=data.features, target=data.target, text=data.text, missing=data.missing,
            columns=None if takes_text else schema.get("columns"), weight=request.weight_name,
            classes=schema.get("classes", {}).get(output_name), names_allowed=slot.class_names, loss=slot.loss))
        weights = None if read.weights is None else \
            request.weight_array(read.weights, f"{path}, column {request.weight_name!r}", read.where)
        assert read.y is not None
        missing = schema.setdefault("missing", {"policy": data.missing, "rows_dropped": 0, "cells_filled": 0})
        missing["rows_dropped"] = missing.get("rows_dropped", 0) + read.rows_dropped
        if read.classes is not None:
            request.classes(output_name, read.classes, f"{path}, {column}")
            y = read.y
        else:
            request.check_ids(read.y, output_name, read.where, column)
            y = read.y.astype(np.float32)
        if takes_text:
            return Examples({input_name: read.x}, {output_name: y}, weights=weights)
        schema.setdefault("columns", read.columns)
        x = np.ascontiguousarray(read.x, dtype=np.float32)  # C order: batches gather rows
        if "fill" in missing:
            missing["cells_filled"] = missing.get("cells_filled", 0) + fill_missing(x, read.columns,
                                                                                    missing["fill"])
        return Examples({input_name: x}, {output_name: y}, weights=weights)

    def _inputs(self, path: Path, request: ReadRequest) -> Examples:
        """The feature columns, by the names training stored (an old checkpoint: by data.features, all but the
        target without it), missing cells filled as training filled them; or a text model's text column. NaN and
        missing cells without a fill stay NaN, for predict to refuse or mark."""
        data, names = request.data, list(request.inputs)
        if len(names) != 1:
            raise DataError(f"{path}: the model has {len(names)} inputs and {self.kind} feeds one; give an .npz "
                            f"with arrays {names}")
        takes_text = request.inputs[names[0]].takes_text
        if takes_text and data.text is None:
            raise DataError(f"{path}: the model takes text, but its spec names no text column (data.text); give a "
                            f".txt file with one text a line instead")
        read = read_table_examples(self.table(path), CsvRecipe(
            features=data.features, ignore=data.target, missing="keep", text=data.text if takes_text else None,
            columns=request.schema.get("columns")))
        if takes_text:
            return Examples({names[0]: read.x}, lines=read.lines)
        x = np.ascontiguousarray(read.x, dtype=np.float32)
        fill = request.schema.get("missing", {}).get("fill")
        if fill:
            fill_missing(x, read.columns, fill)
        return Examples({names[0]: x}, lines=read.lines)


def describe_table(table: Table) -> dict[str, Any]:
    """A table's rows and columns, its text columns, missing cells by column and constant columns (one value in
    every row, missing cells aside: a feature that tells the model nothing)."""
    missing = table.missing(list(range(len(table.header)))).sum(axis=0)
    constant, text = [], []
    for j, name in enumerate(table.header):
        if table.is_numeric(j):
            values = table.columns[j][~np.isnan(table.columns[j])]
        else:
            cells = np.char.strip(table.columns[j])
            values = cells[~np.isin(cells, MISSING_CELLS)]
            try:
                values = values.astype(np.float64)
            except ValueError:
                text.append(name)
        if len(values) and (values == values[0]).all():
            constant.append(name)
    return {"rows": len(table), "columns": len(table.header), "text_columns": text,
            "missing_cells": {name: int(count) for name, count in zip(table.header, missing) if count},
            "constant_columns": constant}
