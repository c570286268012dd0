"""dlcli plot."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("plot")
@click.argument("runs", metavar="RUN [RUN ...]", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Draw this metric (loss, accuracy, ...; its val_ values come with it). Repeatable; default all.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the figure to this .png, .svg or .pdf file (needs dlcli[plot]) instead of drawing text.")
@click.option("--width", type=click.IntRange(min=30), default=None, help="Text width (default: the terminal's).")
@click.option("--json", "as_json", is_flag=True, help="Print the curves' values as JSON instead of drawing them.")
def plot_command(runs: tuple[Path, ...], metrics: tuple[str, ...], output: Path | None, width: int | None,
                 as_json: bool) -> None:
    """Learning curves of one or more runs, from their run directories alone.

    One chart per metric with training and validation values, the best epoch of the monitored value marked
    with a star, several runs overlaid under their names. Without --output it draws in the terminal, as text
    that also reads well in a CI log.
    """
    json_mode(as_json)
    from dlcli.errors import CheckpointError
    from dlcli.report.curves import learning_curves, render_text
    from dlcli.train.runs import RunRecord

    records = [RunRecord.read(path) for path in runs]
    empty = [str(record.path) for record in records if not record.history]
    if empty:
        raise CheckpointError(f"{', '.join(empty)}: no finished epoch yet (history.jsonl is empty or missing); "
                              "nothing to draw")
    charts = learning_curves(records, metrics)
    if output is not None:
        from dlcli.report.figures import save_curves

        save_curves(charts, output)
    if as_json:
        for chart in charts:
            click.echo(json_line({"event": "curves", "metric": chart.metric,
                                   "series": [{"label": s.label, "validation": s.validation, "epochs":
                                               [e for e, _ in s.points], "values": [v for _, v in s.points]}
                                              for s in chart.series],
                                   "best": [{"label": label, "epoch": epoch, "value": value}
                                            for _, label, epoch, value in chart.best]}))
        if output is not None:
            click.echo(json_line({"event": "figure", "path": str(output)}))
    elif output is not None:
        click.echo(f"figure path={output} charts={len(charts)}")
    else:
        click.echo(render_text(charts, width))
