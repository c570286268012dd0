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
@click.argument("folder", metavar="[DIR]", type=click.Path(path_type=Path), required=False)
@click.option("--sort", "sort_key", type=click.Choice(SORT_KEYS), default="started", show_default=True,
              help="Order of the rows; best puts the best monitored value first.")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def runs_command(folder: Path | None, sort_key: str, reverse: bool, as_json: bool) -> None:
    """List the runs in DIR (default runs/): status, epochs, best monitored value, wall time, start; the runs of
    a K-fold folder or a tune study in DIR too (as FOLDER/fold-1, FOLDER/trial-0).

    A run whose run.json says running while no process holds its lock is shown as killed (SIGKILL, out of
    memory, power loss): continue it with dlcli train RUN --resume.
    """
    json_mode(as_json)
    from dlcli.errors import SpecError
    from dlcli.report.tables import format_duration, text_table
    from dlcli.train.runs import RunRecord, is_run_directory

    default = folder is None
    folder = Path("runs") if folder is None else folder
    if not folder.is_dir() and not default:
        raise SpecError(f"{folder}: no such folder; give the folder your runs are in (default runs/, where "
                        "dlcli train puts them)")
    paths = [] if not folder.is_dir() else [folder] if is_run_directory(folder) else _runs_in(folder)
    rows = sorted((_row(RunRecord.read(path), _shown_name(path, folder)) for path in paths),
                  key=_sort_key(sort_key), reverse=reverse)
    if as_json:
        for row in rows:
            click.echo(json_line({"event": "run", **{k: v for k, v in row.items() if not k.startswith("_")}}))
        return
    if not rows:  # no runs/ yet is where every new user starts: nothing to list, no error
        click.echo(f"no runs in {folder}" + (" (dlcli train puts them there)" if default else ""))
        return
    table = [(row["run"], row["status"], f"{row['epochs']}/{row['epochs_total'] or '?'}", _best_cell(row),
              format_duration(row["seconds"]), (row["started"] or "-")[:16].replace("T", " ")) for row in rows]
    click.echo(text_table(("run", "status", "epochs", "best", "time", "started"), table, right=(2, 4)))


def _runs_in(folder: Path) -> list[Path]:
    """The run directories in `folder`, and one level further down those of a folder that is not a run: a K-fold
    folder's fold-1/ ... and a tune study's trial-0/ ..., which dlcli train and dlcli tune put there."""
    from dlcli.train.runs import is_run_directory

    found = []
    for path in sorted(folder.iterdir()):
        if is_run_directory(path):
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(inner for inner in path.iterdir() if is_run_directory(inner)))
    return found


def _shown_name(path: Path, folder: Path) -> str:
    """A run's name in the listing: its path under the folder listed (blobs-kfold/fold-1), or its own name."""
    return path.name if path == folder else path.relative_to(folder).as_posix()


def _row(record: RunRecord, name: str) -> dict[str, Any]:
    done, total = record.epochs
    best = record.best()
    started = record.started
    return {"run": name, "path": str(record.path), "status": record.status, "epochs": done,
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
