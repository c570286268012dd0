"""Exporters: a trained model written in another format, registered by format in registry.exporters, and the check
of a written file against dlcli's own predict. Importing this package registers every format (none of them
imports its heavy library until a file is written or run)."""

from dlcli.export import onnx  # noqa: F401 - registers "onnx"
from dlcli.export.check import DEFAULT_ATOL, DEFAULT_RTOL, CheckReport, OutputComparison, check_export
from dlcli.export.exporter import Exported, Exporter, ExportSource, spec_sha256
from dlcli.export.runs import check_inputs, export_run, load_source

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "CheckReport", "ExportSource", "Exported", "Exporter", "OutputComparison",
           "check_export", "check_inputs", "export_run", "load_source", "spec_sha256"]
