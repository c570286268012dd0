"""`dlcli lr-find`'s curve: the smoothed loss against the learning rate (log scale), as text for the terminal
and CI logs, or as an image file through matplotlib (the plot extra)."""

from __future__ import annotations

import math
from pathlib import Path

from dlcli.errors import SpecError

PLOT_INSTALL = "pip install 'dlcli[plot]'"


def text_curve(rates: list[float], losses: list[float], mark: float | None = None, width: int = 64,
               height: int = 14) -> str:
    """The points as a character plot: log(rate) across, loss up; `mark` (the suggested rate) as a column of
    '|'. Non-finite losses are left out."""
    points = [(math.log10(r), y) for r, y in zip(rates, losses) if r > 0 and math.isfinite(y)]
    if not points:
        return "(no finite loss to plot)"
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    grid = [[" "] * width for _ in range(height)]

    def column(x: float) -> int:
        return min(width - 1, int((x - x_low) / (x_high - x_low) * (width - 1) + 0.5))

    if mark is not None and mark > 0:
        for row in grid:
            row[column(math.log10(mark))] = "|"
    for x, y in points:
        grid[height - 1 - min(height - 1, int((y - y_low) / (y_high - y_low) * (height - 1) + 0.5))][column(x)] = "*"
    labels = [f"{y_high:.4g}", *[""] * (height - 2), f"{y_low:.4g}"]
    pad = max(len(label) for label in labels)
    lines = [f"{label:>{pad}} |{''.join(row)}" for label, row in zip(labels, grid)]
    left, right = f"{10 ** x_low:.0e}", f"{10 ** x_high:.0e}"
    lines.append(f"{'':>{pad}} +{'-' * width}")
    lines.append(f"{'':>{pad}}  {left}{'learning rate (log scale)':^{width - len(left) - len(right)}}{right}")
    return "\n".join(lines)


def plot_curve(path: Path, rates: list[float], losses: list[float], smoothed: list[float],
               mark: float | None = None) -> None:
    """Write the curve to an image file (its suffix picks the format: .png, .svg, .pdf); SpecError naming the
    plot extra when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, none opened
        import matplotlib.pyplot as plt
    except ImportError:
        raise SpecError(f"--output {path}: writing a plot needs matplotlib, which is not installed: "
                        f"{PLOT_INSTALL} (without --output the curve is printed)") from None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(rates, losses, color="0.75", linewidth=0.8, label="loss")
    axes.plot(rates, smoothed, color="C0", label="smoothed loss")
    if mark is not None:
        axes.axvline(mark, color="C3", linestyle="--", label=f"suggested {mark:.3g}")
    finite = [y for y in smoothed if math.isfinite(y)]
    if finite:  # the smoothed loss sets the scale: one raw spike would flatten the curve that matters
        low, high = min(finite), max(finite)
        axes.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.25 * (high - low + 1e-12))
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except (OSError, ValueError) as err:  # an unwritable place, or a suffix matplotlib has no format for
        raise SpecError(f"--output {path}: cannot write the plot ({err})") from None
    finally:
        plt.close(figure)
