"""dlcli export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("export")
@click.argument("target", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "format_name", default="onnx", show_default=True, metavar="FORMAT",
              help="The file format (registered exporters: onnx).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the file here (default: RUN/best.onnx or RUN/last.onnx; beside a checkpoint file).")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@click.option("--opset", type=int, default=None,  # the exporter checks it (onnx: 14 or later)
              help="ONNX opset to write, 14 or later (default: 17, or 20 for a model that tokenizes text in the "
                   "graph).")
@click.option("--check", is_flag=True,
              help="Run the file in onnxruntime on the test split (or --data) and compare every output with dlcli "
                   "predict; exit 1 when one differs beyond the tolerance.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="With --check: compare on this file's examples (as dlcli predict reads INPUT).")
@click.option("--examples", type=click.IntRange(min=1), default=None,
              help="With --check: how many examples (the first ones; default 256).")
@click.option("--rtol", type=click.FloatRange(min=0.0), default=None,
              help="With --check: relative tolerance (default 1e-4): |exported - dlcli| <= atol + rtol * |dlcli|.")
@click.option("--atol", type=click.FloatRange(min=0.0), default=None,
              help="With --check: absolute tolerance, for values near zero (default 1e-5).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for the export (and one for the check).")
def export_command(target: Path, format_name: str, output: Path | None, which: str, opset: int | None, check: bool,
                   data_path: Path | None, examples: int | None, rtol: float | None, atol: float | None,
                   as_json: bool) -> None:
    """Write a trained model as an ONNX file that takes the raw inputs; --check compares it with dlcli predict.

    RUN is a run directory or a checkpoint file. Exit codes as for every command; --check finding an output
    beyond the tolerance is exit 1, after its FAILED line.
    """
    json_mode(as_json)
    from dlcli.errors import SpecError

    given = [name for name, value in (("--data", data_path), ("--examples", examples), ("--rtol", rtol),
                                      ("--atol", atol)) if value is not None]
    if given and not check:
        raise SpecError(f"{', '.join(given)} only apply with --check; add --check, or leave them out")
    from dlcli.export import DEFAULT_ATOL, DEFAULT_RTOL, check_export, check_inputs, export_run

    exporter, source, exported = export_run(target, which, format_name, output, {"opset": opset})
    _report_export(exported, source.epoch, as_json)
    if not check:
        return
    inputs, origin = check_inputs(source, data_path, examples or 256)
    report = check_export(exporter, exported, source, inputs, DEFAULT_RTOL if rtol is None else rtol,
                          DEFAULT_ATOL if atol is None else atol)
    outputs = {o.name: {"max_abs": o.max_abs, "max_rel": o.max_rel, "passed": o.passed} for o in report.outputs}
    if as_json:
        click.echo(json_line({"event": "check", "path": str(exported.path), "data": origin,
                               "examples": report.examples, "rtol": report.rtol, "atol": report.atol,
                               "outputs": outputs, "passed": report.passed}))
    else:
        for o in report.outputs:
            click.echo(f"check output={o.name} examples={report.examples} data={origin} max_abs={o.max_abs:.3g} "
                       f"max_rel={o.max_rel:.3g} {'ok' if o.passed else 'FAILED'}")
    if not report.passed:
        raise report.failure(exported.path)


def _report_export(exported: Any, epoch: int | None, as_json: bool) -> None:
    """The export line (or JSON object), then each note on stderr (in the JSON object with --json)."""
    if as_json:
        click.echo(json_line({"event": "export", "path": str(exported.path), "format": exported.format,
                               "bytes": exported.size, "seconds": round(exported.seconds, 4), "epoch": epoch,
                               **exported.details, "inputs": exported.inputs, "outputs": exported.outputs,
                               "files": [str(path) for path in exported.files], "notes": exported.notes}))
        return
    details = " ".join(f"{key}={value}" for key, value in exported.details.items())
    click.echo(f"export path={exported.path} format={exported.format} {details} epoch={epoch} "
               f"bytes={exported.size} seconds={exported.seconds:.3f}")
    for note in exported.notes:
        click.echo(f"note: {note}", err=True)
