"""dlcli predict."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode


@click.command("predict")
@click.argument("target", metavar="CHECKPOINT_OR_RUN_DIR", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write predictions here: .npy, .npz, .csv or .jsonl (default: lines on stdout).")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: the spec's batch size.")
@click.option("--beam-width", type=click.IntRange(min=1), default=None,
              help="Decode ctc outputs by prefix beam search with this many beams (default: greedy).")
@click.option("--allow-nonfinite", is_flag=True,
              help="Predict examples holding NaN, infinity or a missing value too, marked nonfinite=true "
                   "(without it they are an error, exit 3).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per example on stdout.")
def predict_command(target: Path, input_path: Path, output: Path | None, which: str, batch_size: int | None,
                    beam_width: int | None, allow_nonfinite: bool, as_json: bool) -> None:
    """Predictions of a trained model for the examples in INPUT (.npy, .npz or .csv; .txt, a text a line, for text).

    An image model takes an image file, a folder of images, or a .txt file of image paths, one a line; a text
    model trained on a folder takes a folder of .txt files. Each prediction then starts with its file (path=...).
    A time-series model predicts each window of a table, starting with the row it ends on and the row it
    forecasts (row=... target_row=...), the last window ending on the table's last row.
    CSV columns are matched by name to the ones the model was trained on; a model trained on class names
    reports them (label=NAME label_id=ID). Outputs trained with the ctc loss are decoded to label sequences
    (padded with -1 in .npy files); per-step classifiers give a label for each step (padded steps of a masked
    sequence left out).
    """
    json_mode(as_json)
    from dlcli.train.predictions import (check_output_path, decode_sequences, nonfinite_examples,
                                         read_prediction_inputs, write_predictions)
    from dlcli.train.loop import predict
    from dlcli.train.run_checkpoints import load_run

    check_output_path(output, None, allow_nonfinite)  # a usage error is found before anything is loaded
    spec, model, _, metadata, _ = load_run(target, which)
    check_output_path(output, model, allow_nonfinite)
    schema = metadata.get("data") or {}  # checkpoints before the data schema have none: read as they did
    inputs = read_prediction_inputs(input_path, spec, model, schema)
    nonfinite = nonfinite_examples(inputs, allow_nonfinite)
    outputs, masks = predict(model, inputs.arrays, batch_size or spec.train.batch_size)
    outputs = decode_sequences(outputs, model, beam_width, masks)
    for line in write_predictions(outputs, model, output, as_json, masks, schema.get("classes"), nonfinite,
                                  inputs.positions):
        click.echo(line)
