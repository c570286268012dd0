"""dlcli log."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("log")
@click.argument("run", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--to", "loggers", multiple=True, required=True, metavar="LOGGER",
              help="The logger to replay the run into: tensorboard, mlflow or csv (dlcli list loggers). Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object saying what was logged.")
def log_command(run: Path, loggers: tuple[str, ...], as_json: bool) -> None:
    """Replay a run's history into a tracker, for a run made before that logger was configured.

    Each logger takes the options the run's spec gave it ([train] loggers), else its defaults, and logs only
    the epochs its tracker does not have yet: replaying twice logs nothing twice. A finished run's checkpoints
    and files (and an exported .onnx file) go to MLflow as artifacts, so `dlcli log RUN --to mlflow` after
    `dlcli export RUN` adds the exported model to the run's MLflow entry.
    """
    json_mode(as_json)
    from dlcli.train.replay import replay

    done = replay(run, loggers)
    if as_json:
        click.echo(json_line({"event": "log", **done}))
    else:
        click.echo(f"log run_dir={done['run_dir']} to={','.join(done['loggers'])} epochs={done['epochs']} "
                   f"step={done['step']} status={done['status']}")
