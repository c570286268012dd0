"""The Keras-style model summary table that `dlcli validate` and `dlcli summary` print."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = ("Layer (type)", "Output Shape", "Param #", "Connected to")
GAP = "   "


def format_shape(shape: Any) -> str:
    """An output shape as Keras prints it, the batch axis as None: (None, 512); a list gives one per line."""
    if isinstance(shape, list) and all(isinstance(item, (tuple, list)) for item in shape):
        return "\n".join(format_shape(tuple(item)) for item in shape)  # a layer with several outputs
    dims = ["None" if dim is None else str(dim) for dim in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def render_summary_table(rows: Sequence[dict[str, Any]], totals: dict[str, int], title: str | None = None) -> str:
    """The model summary as plain text (ASCII only, no colour): one row per layer, then the parameter totals.

    rows: {"name", "type", "output_shape", "params", "connected_to"} per layer, in order;
    totals: {"total", "trainable", "non_trainable"}.
    """
    cells = [[f"{row['name']} ({row['type']})", format_shape(row["output_shape"]), f"{row['params']:,}",
              "\n".join(row.get("connected_to") or ["-"])] for row in rows]
    widths = [max([len(header)] + [len(line) for cell in cells for line in cell[i].split("\n")])
              for i, header in enumerate(COLUMNS)]
    width = len(" ") + sum(widths) + len(GAP) * (len(widths) - 1)
    lines = [f'Model: "{title}"'] if title else []
    lines += ["_" * width, _row(list(COLUMNS), widths), "=" * width]
    for i, row_cells in enumerate(cells):
        if i:
            lines.append("_" * width)
        lines += _row(row_cells, widths).split("\n")
    lines += ["=" * width,
              f"Total params: {totals['total']:,}",
              f"Trainable params: {totals['trainable']:,}",
              f"Non-trainable params: {totals['non_trainable']:,}",
              "_" * width]
    return "\n".join(lines)


def _row(cells: list[str], widths: list[int]) -> str:
    """One table row, as many text lines as its tallest cell; Param # is right-aligned, as numbers are."""
    split = [cell.split("\n") for cell in cells]
    height = max(len(parts) for parts in split)
    out = []
    for line in range(height):
        parts = [p[line] if line < len(p) else "" for p in split]
        padded = [part.rjust(w) if column == 2 else part.ljust(w)
                  for column, (part, w) in enumerate(zip(parts, widths))]
        out.append((" " + GAP.join(padded)).rstrip())
    return "\n".join(out)
