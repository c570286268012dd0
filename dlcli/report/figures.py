"""Figures as files through matplotlib (the optional extra dlcli[plot]): learning curves and confusion matrices.

matplotlib is imported here, inside the functions, and drawn on a Figure of its own (no pyplot, no global
state, no display needed); the file's suffix picks the format (.png, .svg, .pdf).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcli.errors import SpecError
from dlcli.report.curves import Chart

INSTALL = "pip install 'dlcli[plot]'"
SUFFIXES = (".png", ".svg", ".pdf")


def check_figure_path(path: Path, option: str = "--output") -> None:
    """SpecError (exit 2) for a figure path matplotlib cannot write: an unknown suffix or a missing folder."""
    if path.suffix.lower() not in SUFFIXES:
        raise SpecError(f"{option} {path}: unsupported suffix {path.suffix or '(none)'!r}; write .png, .svg or .pdf")
    if not path.parent.is_dir():
        raise SpecError(f"{option} {path}: the folder {path.parent} does not exist; create it first")


def _figure(columns: int, rows: int, size: tuple[float, float]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError(f"writing a figure needs matplotlib, which is not installed: {INSTALL} (or leave out "
                        "--output to draw in the terminal)") from None
    figure = Figure(figsize=(size[0] * columns, size[1] * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def save_curves(charts: list[Chart], path: Path) -> None:
    """Learning curves: a panel per metric; each run one colour, training solid, validation dashed, the best
    epoch a star."""
    check_figure_path(path)
    columns = min(2, len(charts))
    figure, axes = _figure(columns, -(-len(charts) // columns), (6.0, 4.0))
    colours = [f"C{i}" for i in range(10)]
    for chart, ax in zip(charts, axes.flat):
        for series in chart.series:
            epochs, values = zip(*series.points)
            ax.plot(epochs, values, color=colours[series.run % 10], linestyle="--" if series.validation else "-",
                    marker="o" if len(epochs) < 30 else None, markersize=3, label=series.label)
        for run, label, epoch, value in chart.best:
            ax.plot([epoch], [value], marker="*", markersize=14, color=colours[run % 10], linestyle="none",
                    markeredgecolor="black", label=f"best {label}: epoch {epoch}")
        ax.set_title(chart.metric)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(charts):]:
        ax.set_visible(False)
    figure.savefig(path)


def save_confusion_matrix(matrix: Any, classes: list[str], path: Path, title: str) -> None:
    """A confusion matrix as an image: true classes down, predicted across, each cell's count written in it."""
    check_figure_path(path)
    size = max(4.0, 0.5 * len(classes) + 2.0)
    figure, axes = _figure(1, 1, (size + 1.0, size))
    ax = axes[0][0]
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right")
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    if len(classes) <= 30:  # beyond that the numbers would not fit in their cells
        for i in ticks:
            for j in ticks:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize="small",
                        color="white" if matrix[i, j] > threshold else "black")
    figure.savefig(path)
