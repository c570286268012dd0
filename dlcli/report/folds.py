"""The table a K-fold run ends with: each value of the last epoch, per fold, with its mean and standard deviation."""

from __future__ import annotations

from typing import Any


def render_fold_table(summary: dict[str, Any]) -> str:
    """Plain text: a row per logged value (loss, metrics, their val_ twins), a column per fold, then mean and std."""
    folds = summary["final"]
    names = list(summary["mean"])
    header = ["value", *(f"fold-{i + 1}" for i in range(len(folds))), "mean", "std"]
    rows = [[name, *(_number(fold.get(name)) for fold in folds), _number(summary["mean"][name]),
             _number(summary["std"][name])] for name in names]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"{summary['folds']} folds in {summary['run_dir']}"]
    lines += ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                        enumerate(zip(row, widths))) for row in [header, *rows]]
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"
