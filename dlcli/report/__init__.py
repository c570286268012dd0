"""Training output: rich bars on a terminal, plain lines on a pipe or in CI, JSON lines with --json.

Only this package imports rich, and only when a terminal display is actually made, so commands that
print a summary table or JSON never load it. Every reporter writes through a GuardedStream (stream.py):
when stdout cannot be written any more, the output stops with one note on stderr and training goes on.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from dlcli.report.base import Reporter
from dlcli.report.data import render_data_report
from dlcli.report.folds import render_fold_table
from dlcli.report.records import JsonRecords, PlainRecords, json_error
from dlcli.report.summary import render_summary_table

OUTPUTS = ("auto", "plain", "json", "quiet")

__all__ = ["OUTPUTS", "JsonRecords", "PlainRecords", "Reporter", "json_error", "make_reporter",
           "render_data_report", "render_fold_table", "render_summary_table", "wants_live_display"]


def wants_live_display(stream: TextIO) -> bool:
    """True when stream is a terminal and not in CI (the `CI` variable unset or empty), as SPEC.md says."""
    if os.environ.get("CI"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def make_reporter(output: str, stream: TextIO | None = None) -> Reporter:
    """The reporter for an --output choice: "auto" (bars on a terminal, else plain), "plain", "json", "quiet".

    "quiet" prints nothing at all; errors are the command line's to print. Close the result when
    training stops, normally or not (`with make_reporter(...) as reporter:`).
    """
    stream = stream if stream is not None else sys.stdout
    if output == "auto":
        output = "rich" if wants_live_display(stream) else "plain"
    if output == "rich":
        from rich.console import Console  # here, so `dlcli --help` and --json runs never import rich

        from dlcli.report.progress import RichProgress
        return RichProgress(Console(file=stream))
    if output == "plain":
        return PlainRecords(stream)
    if output == "json":
        return JsonRecords(stream)
    if output == "quiet":
        return Reporter()
    raise ValueError(f"unknown output {output!r}; expected one of {', '.join(OUTPUTS)}")
