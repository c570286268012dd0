"""Learning curves from run directories: one chart per metric, training and validation, the best epoch marked,
several runs overlaid; drawn as text for a terminal or a CI log (matplotlib files: report/figures.py).

The text chart uses one marker per series, no colour: a run's training values are filled (●), its validation
values hollow (○), the next run gets ■/□, and so on; a line of dots joins a series' points, and ★ marks the best
epoch of the monitored value. It is plain Unicode text, so it reads the same in a log as on a screen.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field

from dlcli.errors import SpecError
from dlcli.registry import suggest
from dlcli.train.runs import RunRecord

MARKERS = (("●", "○"), ("■", "□"), ("▲", "△"), ("◆", "◇"), ("✚", "✜"), ("⬟", "⬠"))
BEST = "★"
JOIN = "·"
PLOTTABLE_EXTRA = ("learning_rate",)  # columns that are not metrics but may be drawn when asked for


@dataclass
class Series:
    """One line: a run's training or validation values of one metric, (epoch, value) pairs."""

    label: str
    run: int  # the run's position, which picks its marker and colour
    validation: bool
    points: list[tuple[int, float]]


@dataclass
class Chart:
    """One metric: every run's training and validation series, and the best epochs to mark on them."""

    metric: str
    series: list[Series] = field(default_factory=list)
    best: list[tuple[int, str, int, float]] = field(default_factory=list)  # (run, "<run> <column>", epoch, value)


def run_labels(records: list[RunRecord]) -> list[str]:
    """The runs' names in charts and tables: the folder name, or the path where two share a name."""
    names = [record.name for record in records]
    return [str(record.path) if names.count(record.name) > 1 else record.name for record in records]


def learning_curves(records: list[RunRecord], metrics: tuple[str, ...] = ()) -> list[Chart]:
    """A chart per metric (`metrics`, by name with or without val_; default every metric of the runs)."""
    columns = list(dict.fromkeys(c for record in records for c in record.metric_columns()))
    bases = list(dict.fromkeys(c.removeprefix("val_") for c in columns))
    wanted = list(dict.fromkeys(name.removeprefix("val_") for name in metrics)) or bases
    for name in wanted:
        if name not in bases and name not in PLOTTABLE_EXTRA:
            close = suggest(name, [*bases, *PLOTTABLE_EXTRA])
            hint = f" (did you mean {close}?)" if close else ""
            raise SpecError(f"--metric {name}: the runs have no such value{hint}; they have "
                            f"{', '.join(bases + list(PLOTTABLE_EXTRA))}")
    labels = run_labels(records)
    charts = []
    for name in wanted:
        chart = Chart(name)
        for index, (record, label) in enumerate(zip(records, labels)):
            for column, validation in ((name, False), (f"val_{name}", True)):
                points = record.series(column)
                if points:
                    chart.series.append(Series(f"{label} {column}", index, validation, points))
            best = record.best()
            if best is not None and best.monitor.removeprefix("val_") == name and best.value is not None:
                chart.best.append((index, f"{label} {best.monitor}", best.epoch, best.value))
        if chart.series:
            charts.append(chart)
    return charts


def render_text(charts: list[Chart], width: int | None = None, height: int = 12) -> str:
    """The charts as text, one under the other."""
    width = width or min(100, shutil.get_terminal_size((80, 24)).columns)
    return "\n\n".join(_render_chart(chart, max(20, width - 12), height) for chart in charts)


def _render_chart(chart: Chart, width: int, height: int) -> str:
    values = [v for s in chart.series for _, v in s.points] + [v for *_, v in chart.best]
    low, high = min(values), max(values)
    if math.isclose(low, high):
        low, high = low - 0.5 * (abs(low) or 1.0), high + 0.5 * (abs(high) or 1.0)
    last = max(epoch for s in chart.series for epoch, _ in s.points)
    first = min(epoch for s in chart.series for epoch, _ in s.points)
    span = max(1, last - first)
    width = min(width, max(span * 4 + 1, 21))  # a short run keeps its points readable, not spread thin

    def column(epoch: float) -> int:
        return round((epoch - first) / span * (width - 1))

    def row(value: float) -> int:
        return round((high - value) / (high - low) * (height - 1))

    grid = [[" "] * width for _ in range(height)]
    for series in chart.series:  # joins first, so that every point drawn after them stays visible
        for (e0, v0), (e1, v1) in zip(series.points, series.points[1:]):
            c0, c1 = column(e0), column(e1)
            for c in range(c0 + 1, c1):
                r = row(v0 + (v1 - v0) * (c - c0) / (c1 - c0))
                if grid[r][c] == " ":
                    grid[r][c] = JOIN
    for series in chart.series:
        marker = MARKERS[series.run % len(MARKERS)][series.validation]
        for epoch, value in series.points:
            grid[row(value)][column(epoch)] = marker
    for _, _, epoch, value in chart.best:
        grid[row(value)][column(epoch)] = BEST
    labels = {0: high, height - 1: low, (height - 1) // 2: high - (high - low) * ((height - 1) // 2) / (height - 1)}
    lines = [chart.metric]
    for r, cells in enumerate(grid):
        label = f"{labels[r]:.4g}" if r in labels else ""
        lines.append(f"{label:>10} {'┤' if r in labels else '│'}{''.join(cells).rstrip()}")
    ticks = sorted({first, last} | ({(first + last) // 2} if span >= 4 else set()))
    axis, numbers = ["─"] * width, [" "] * (width + 6)
    for tick in ticks:
        axis[column(tick)] = "┬"
        text = str(tick)
        start = min(column(tick), width + 6 - len(text))
        numbers[start:start + len(text)] = list(text)
    lines.append(f"{'':>10} └{''.join(axis)}")
    lines.append(f"{'':>10}  {''.join(numbers).rstrip()}  epoch")
    legend = [f"{MARKERS[s.run % len(MARKERS)][s.validation]} {s.label}" for s in chart.series]
    legend += [f"{BEST} best {label}: epoch {epoch} ({value:.4g})" for _, label, epoch, value in chart.best]
    lines += [f"{'':>10}  {entry}" for entry in legend]
    return "\n".join(lines)

