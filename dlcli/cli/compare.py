"""dlcli compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line

if TYPE_CHECKING:
    from dlcli.train.runs import RunRecord


@click.command("compare")
@click.argument("runs", metavar="RUN RUN [RUN ...]", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--plot", "draw", is_flag=True, help="Then draw the runs' learning curves in the terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the differences and metrics.")
def compare_command(runs: tuple[Path, ...], draw: bool, as_json: bool) -> None:
    """Compare runs: their spec differences as key paths, then their final and best metrics.

    The first run is the reference: `train.optimizer.learning_rate: 0.001 -> 0.01` says the second run set
    0.01 where the first had 0.001 (with three or more runs each value is named by its run).
    """
    json_mode(as_json)
    from dlcli.errors import SpecError
    from dlcli.report.curves import learning_curves, render_text, run_labels
    from dlcli.report.tables import format_cell, text_table
    from dlcli.spec.keys import key_differences
    from dlcli.train.runs import RunRecord

    if len(runs) < 2:
        raise SpecError("dlcli compare needs two runs or more (dlcli compare runs/a runs/b); to look at one run, "
                        "use dlcli runs or dlcli plot")
    records = [RunRecord.read(path) for path in runs]
    labels = run_labels(records)
    differences = key_differences([record.spec for record in records])
    metrics = [_metrics(record) for record in records]
    if as_json:
        click.echo(json_line({"event": "compare", "runs": [str(record.path) for record in records],
                               "differences": [{"key": key, "values": values} for key, values in differences],
                               "metrics": [{"run": str(record.path), **each}
                                           for record, each in zip(records, metrics)]}))
        return
    click.echo(f"spec differences ({' -> '.join(labels) if len(records) == 2 else ', '.join(labels)}):")
    for key, values in differences:
        if len(values) == 2:
            click.echo(f"  {key}: {_value(values[0])} -> {_value(values[1])}")
        else:
            click.echo(f"  {key}: " + "  ".join(f"{label}={_value(v)}" for label, v in zip(labels, values)))
    if not differences:
        click.echo("  (none: the runs have the same resolved spec)")
    columns = list(dict.fromkeys(column for record in records for column in record.metric_columns()))
    rows: list[list[Any]] = []
    for label, record, each in zip(labels, records, metrics):
        done, total = record.epochs
        rows.append([label, record.status, f"{done}/{total or '?'}", "final",
                     *(each["final"].get(column) for column in columns)])
        rows.append(["", "", "", "best", *(_at(each["best"].get(column)) for column in columns)])
    click.echo("")
    click.echo(text_table(("run", "status", "epochs", "", *columns), rows, right=(2, *range(4, 4 + len(columns)))))
    monitored = [f"{label}: {b['monitor']}={format_cell(b['value'])} at epoch {b['epoch']}"
                 for label, b in ((label, each["monitored"]) for label, each in zip(labels, metrics)) if b]
    if monitored:
        click.echo("best checkpoints: " + "; ".join(monitored))
    if draw:
        drawable = [record for record in records if record.history]
        if drawable:
            click.echo("")
            click.echo(render_text(learning_curves(drawable)))


def _metrics(record: RunRecord) -> dict[str, Any]:
    """A run's final values, each metric's best value and epoch, and the monitored best (checkpoints/best)."""
    from dlcli.train.callbacks.monitor import monitor_mode

    best = {}
    for column in record.metric_columns():
        points = record.series(column)
        if points:
            epoch, value = (min if monitor_mode(column, "auto") == "min" else max)(points, key=lambda p: p[1])
            best[column] = {"value": value, "epoch": epoch}
    monitored = record.best()
    return {"final": record.final(), "best": best,
            "monitored": None if monitored is None else {"monitor": monitored.monitor, "value": monitored.value,
                                                         "epoch": monitored.epoch}}


def _at(best: dict[str, Any] | None) -> str:
    from dlcli.report.tables import format_cell

    return "-" if best is None else f"{format_cell(best['value'])} @{best['epoch']}"


def _value(value: Any) -> str:
    """A spec value as TOML would write it (strings quoted, lists in brackets); a key one run lacks: (unset)."""
    return "(unset)" if value is None else json.dumps(value)
