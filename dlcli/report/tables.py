"""Plain-text tables for the commands that list and compare runs: aligned columns, ASCII only, no colour, so
they read the same on a terminal and in a CI log."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Columns separated by two spaces, each as wide as its widest cell; columns in `right` (numbers) are
    right-aligned. Cells are turned into text with format_cell."""
    cells = [list(header)] + [[format_cell(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [cell.rjust(width) if i in right else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    """A table cell: '-' for nothing, 4 significant digits for a float (as the training lines print them)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def format_duration(seconds: float | None) -> str:
    """12.3s, 4m05s, 2h03m: wall times as a person reads them."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
