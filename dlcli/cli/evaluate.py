"""dlcli eval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("eval")
@click.argument("target", metavar="CHECKPOINT_OR_RUN_DIR", type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Evaluate on this file (.npz, .csv, .npy pair) instead of the spec's test split.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: the spec's batch size.")
@click.option("--confusion-matrix", "confusion", is_flag=True,
              help="Also print each classification output's confusion matrix with per-class precision and recall.")
@click.option("--output", "figure", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --confusion-matrix: also draw it to this .png, .svg or .pdf file (needs dlcli[plot]).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate_command(target: Path, data_path: Path | None, which: str, batch_size: int | None, confusion: bool,
                     figure: Path | None, as_json: bool) -> None:
    """Loss and metrics of a trained model on the test split (or on --data).

    --confusion-matrix adds, for every classification output, the confusion matrix (rows: true class,
    columns: predicted) with the class names the checkpoint knows, and each class's precision and recall.
    """
    json_mode(as_json)
    from dlcli.errors import SpecError

    if figure is not None:
        if not confusion:
            raise SpecError(f"--output {figure} draws the confusion matrix: add --confusion-matrix")
        from dlcli.report.figures import check_figure_path

        check_figure_path(figure)
    from dlcli.train.datasets import evaluation_split
    from dlcli.train.loop import Objective, evaluate
    from dlcli.train.run_checkpoints import load_run

    spec, model, _, metadata, path = load_run(target, which)
    # what training learned about its data (CSV columns, class names, fills); checkpoints before it have none
    # and read the data as they always did
    schema = metadata.get("data") or {}
    split, source = evaluation_split(spec, model, schema, path, data_path)
    objective = Objective(model, {k: v.shape[1:] for k, v in split.targets.items()})
    results = evaluate(model, objective, split, batch_size or spec.train.batch_size)
    record = {"checkpoint": str(path), "epoch": metadata.get("epoch"), "data": source, "samples": len(split),
              **results}
    matrices, figures = _confusion(model, split, batch_size or spec.train.batch_size, schema, figure) \
        if confusion else ([], [])
    if as_json:
        extra = {"confusion_matrices": [m.record() for m in matrices], "figures": figures} if confusion else {}
        click.echo(json_line({"event": "eval", **record, **extra}))
    else:
        values = " ".join(f"{k}={v:.4f}" for k, v in results.items())
        click.echo(f"eval checkpoint={path} epoch={record['epoch']} data={source} samples={len(split)} {values}")
        for matrix in matrices:
            click.echo("")
            click.echo(_confusion_text(matrix))
        for written in figures:
            click.echo(f"figure path={written}")


def _confusion(model: Any, split: Any, batch_size: int, schema: dict[str, Any],
               figure: Path | None) -> tuple[list[Any], list[str]]:
    """Each classification output's Confusion, and the figures drawn to `figure` (one file per output when there
    are several: cm_<output>.png)."""
    from dlcli.train.confusion import confusion_matrices
    from dlcli.train.loop import predict

    outputs, masks = predict(model, split.inputs, batch_size)
    matrices = confusion_matrices(model, split.targets, outputs, masks, schema.get("classes") or {})
    figures = []
    if figure is not None:
        from dlcli.report.figures import save_confusion_matrix

        for matrix in matrices:
            path = figure if len(matrices) == 1 else figure.with_name(f"{figure.stem}_{matrix.output}{figure.suffix}")
            save_confusion_matrix(matrix.matrix, matrix.classes, path, f"{matrix.output}: confusion matrix")
            figures.append(str(path))
    return matrices, figures


def _confusion_text(matrix: Any) -> str:
    """The matrix with class names (rows true, columns predicted), then precision, recall and support."""
    from dlcli.report.tables import text_table

    names = matrix.classes
    grid = text_table([r"true \ predicted", *names], [[name, *row] for name, row in zip(names, matrix.matrix.tolist())],
                      right=range(1, len(names) + 1))
    scores = text_table(["class", "precision", "recall", "support"],
                        [[name, f"{p:.4f}", f"{r:.4f}", int(n)] for name, p, r, n in
                         zip(names, matrix.precision, matrix.recall, matrix.support)], right=(1, 2, 3))
    return f"confusion matrix of output {matrix.output!r} ({int(matrix.support.sum())} examples)\n{grid}\n\n{scores}"
