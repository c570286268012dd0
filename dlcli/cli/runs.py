"""dlcli runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line

if TYPE_CHECKING:
    from dlcli.train.runs import RunRecord

SORT_KEYS = ("started", "name", "status", "epochs", "best", "time")


@click.command("runs")
@click.argument("folder", metavar="[DIR]", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--sort", "sort_key", type=click.Choice(SORT_KEYS), default="started", show_default=True,
              help="Order of the rows; best puts the best monitored value first.")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def runs_command(folder: Path, sort_key: str, reverse: bool, as_json: bool) -> None:
    """List the runs in DIR (default runs/): status, epochs, best monitored value, wall time, start.

    A run whose run.json says running while no process holds its lock is shown as killed (SIGKILL, out of
    memory, power loss): continue it with dlcli train RUN --resume.
    """
    json_mode(as_json)
    from dlcli.errors import CheckpointError
    from dlcli.report.tables import format_duration, text_table
    from dlcli.train.runs import RunRecord, is_run_directory

    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; give the folder your runs are in (default runs/, where "
                              "dlcli train puts them)")
    paths = [folder] if is_run_directory(folder) else sorted(p for p in folder.iterdir() if is_run_directory(p))
    records = [RunRecord.read(path) for path in paths]
    rows = sorted((_row(record) for record in records), key=_sort_key(sort_key), reverse=reverse)
    if as_json:
        for row in rows:
            click.echo(json_line({"event": "run", **{k: v for k, v in row.items() if not k.startswith("_")}}))
        return
    if not rows:
        click.echo(f"no runs in {folder}")
        return
    table = [(row["run"], row["status"], f"{row['epochs']}/{row['epochs_total'] or '?'}", _best_cell(row),
              format_duration(row["seconds"]), (row["started"] or "-")[:16].replace("T", " ")) for row in rows]
    click.echo(text_table(("run", "status", "epochs", "best", "time", "started"), table, right=(2, 4)))


def _row(record: RunRecord) -> dict[str, Any]:
    done, total = record.epochs
    best = record.best()
    started = record.started
    return {"run": record.name, "path": str(record.path), "status": record.status, "epochs": done,
            "epochs_total": total, "monitor": best.monitor if best else None, "best": best.value if best else None,
            "best_epoch": best.epoch if best else None, "seconds": record.wall_seconds(),
            "started": started.isoformat(timespec="milliseconds") if started else None,
            "run_id": record.manifest.get("run_id"),
            "_mode": best.mode if best else "min"}


def _best_cell(row: dict[str, Any]) -> str:
    if row["best"] is None:
        return "-"
    return f"{row['monitor']}={row['best']:.4g} @{row['best_epoch']}"


def _sort_key(key: str) -> Any:
    if key == "best":  # better first, whichever way the run's monitor improves; runs without a value last
        return lambda row: (row["best"] is None, 0.0 if row["best"] is None else
                            row["best"] if row["_mode"] == "min" else -row["best"])
    if key == "time":
        return lambda row: (row["seconds"] is None, row["seconds"] or 0.0)
    column = {"name": "run"}.get(key, key)
    return lambda row: (row[column] is None, row[column] if row[column] is not None else "")
