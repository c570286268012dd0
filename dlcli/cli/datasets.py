"""dlcli datasets."""

from __future__ import annotations

import click

from dlcli.output_text import json_line


@click.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dataset.")
def datasets_command(as_json: bool) -> None:
    """The dataset registry: name, task, size, and whether it is bundled or cached."""
    from dlcli.data import list_datasets

    rows = [row._asdict() for row in list_datasets()]
    if as_json:
        for row in rows:
            click.echo(json_line(row))
        return
    click.echo(f"{'name':<16} {'task':<16} {'size':>10}  where")
    for row in rows:
        where = "bundled" if row["bundled"] else "cached" if row["cached"] else "download"
        click.echo(f"{row['name']:<16} {row['task']:<16} {_size(row['size_bytes']):>10}  {where}")


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    return str(count)
