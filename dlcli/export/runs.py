"""Exporting a run: its checkpoint to a file of a registered format, and the examples a check compares on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import registry
from dlcli.errors import DataError, SpecError
from dlcli.export.exporter import Exported, Exporter, ExportSource
from dlcli.train.datasets import evaluation_split
from dlcli.train.predictions import nonfinite_examples, read_prediction_inputs
from dlcli.train.run_checkpoints import load_run


def load_source(target: Path, which: str = "best") -> ExportSource:
    """The trained model of a run directory's `which` checkpoint (or of a checkpoint file), ready to export."""
    spec, model, _, metadata, path = load_run(target, which)
    return ExportSource(spec, model, metadata, path)


def default_output(target: Path, checkpoint: Path, suffix: str) -> Path:
    """RUN/<checkpoint>.<suffix> for a run directory (best.onnx, last.onnx), or the checkpoint file's name with
    the format's suffix beside it."""
    return target / f"{checkpoint.stem}{suffix}" if target.is_dir() else checkpoint.with_suffix(suffix)


def export_run(target: Path, which: str = "best", format_name: str = "onnx", output: Path | None = None,
               options: dict[str, Any] | None = None) -> tuple[Exporter, ExportSource, Exported]:
    """Write the model of `target` (a run directory or a checkpoint) in `format_name`; (the exporter, what was
    exported, what was written)."""
    exporter: Exporter = registry.exporters.get(format_name)()  # an unknown format: exit 2, did you mean
    if output is not None and not os.path.isdir(output.parent or "."):
        raise SpecError(f"--output {output}: the folder {output.parent} does not exist; create it first")
    source = load_source(target, which)
    path = output or default_output(target, source.checkpoint, exporter.suffix)
    return exporter, source, exporter.write(source, path, options or {})


def check_inputs(source: ExportSource, data_path: Path | None, examples: int) -> tuple[dict[str, np.ndarray], str]:
    """(the first `examples` examples' inputs, where they came from): of `data_path`, read as dlcli predict reads
    its INPUT (targets not needed), or of the run's test split, read as dlcli eval reads it."""
    spec, model = source.spec, source.model
    schema = source.metadata.get("data") or {}
    if data_path is not None:
        read = read_prediction_inputs(data_path, spec, model, schema)
        nonfinite_examples(read, allow=False)  # a NaN row would compare NaN with NaN: refuse it as predict does
        arrays, origin = read.arrays, str(data_path)
    else:
        arrays, origin = evaluation_split(spec, model, schema, source.checkpoint)[0].inputs, "test"
    taken = {name: array[:examples] for name, array in arrays.items()}
    if not len(next(iter(taken.values()))):
        raise DataError(f"{origin}: no examples to check the export on")
    return taken, origin
