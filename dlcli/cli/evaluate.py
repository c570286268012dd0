"""dlcli eval."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dlcli.cli.main import json_mode


@click.command("eval")
@click.argument("target", metavar="CHECKPOINT_OR_RUN_DIR", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Evaluate on this file (.npz, .csv, .npy pair) instead of the spec's test split.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: the spec's batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate_command(target: Path, data_path: Path | None, which: str, batch_size: int | None, as_json: bool) -> None:
    """Loss and metrics of a trained model on the test split (or on --data)."""
    json_mode(as_json)
    from dlcli.train.datasets import evaluation_split
    from dlcli.train.loop import Objective, evaluate
    from dlcli.train.rundir import load_run

    spec, model, _, metadata, path = load_run(target, which)
    # what training learned about its data (CSV columns, class names, fills); checkpoints before it have none
    # and read the data as they always did
    split, source = evaluation_split(spec, model, metadata.get("data") or {}, path, data_path)
    objective = Objective(model, {k: v.shape[1:] for k, v in split.targets.items()})
    results = evaluate(model, objective, split, batch_size or spec.train.batch_size)
    record = {"checkpoint": str(path), "epoch": metadata.get("epoch"), "data": source, "samples": len(split),
              **results}
    if as_json:
        click.echo(json.dumps({"event": "eval", **record}))
    else:
        values = " ".join(f"{k}={v:.4f}" for k, v in results.items())
        click.echo(f"eval checkpoint={path} epoch={record['epoch']} data={source} samples={len(split)} {values}")
