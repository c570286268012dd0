"""The `dlcli` command's entry point: a Ctrl-C while the command line is still starting is an interrupt like any other.

The command line takes about 0.3 s to import click and the commands and to parse its arguments, and a Ctrl-C
in that time used to end it with Python's traceback (exit 1 or a SIGINT death) or click's "Aborted!" (exit 1).
This module imports neither click nor NumPy, so it can answer one that lands before the command line exists.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

INTERRUPTED = "interrupted"
INTERRUPTED_EXIT_CODE = 130  # SIGINT, as SPEC.md says


def main() -> None:
    """Console entry point (`dlcli`, `python -m dlcli`): run the command line; a Ctrl-C that reaches here, while
    it imports or before it has begun a command, exits 130 with the one-line error (a JSON event under --json)."""
    tolerate_unencodable_output()
    try:
        from dlcli.cli.main import main as command_line

        command_line()
    except KeyboardInterrupt:
        report_interrupted(asks_for_json(sys.argv[1:]))
        sys.exit(INTERRUPTED_EXIT_CODE)


def tolerate_unencodable_output() -> None:
    """Let stdout and stderr write any text: a character their encoding lacks (a class name or path in a C or
    Latin-1 locale) is written as a backslash escape (\\xe9), where it would raise UnicodeEncodeError mid-command.
    Surrogates (undecodable bytes of argv in such a locale) become escapes too, except where Python's UTF-8 mode
    already writes them back as the bytes they came from."""
    for stream in (sys.stdout, sys.stderr):
        errors, encoding = getattr(stream, "errors", None), str(getattr(stream, "encoding", "")).lower()
        round_trip = errors == "surrogateescape" and encoding.replace("-", "") == "utf8"
        if errors in ("strict", "surrogateescape") and not round_trip and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (OSError, ValueError):  # a closed or odd stream: the guarded writes deal with it
                pass


def asks_for_json(args: Sequence[str]) -> bool:
    """Whether --json is on the command line (before a `--`, after which words are arguments)."""
    words = list(args)
    return "--json" in (words[:words.index("--")] if "--" in words else words)


def report_interrupted(as_json: bool) -> None:
    """The interrupt's error, as dlcli.cli.main.report_error writes every error, without click: one line on stderr,
    or the JSON error event on stdout and on stderr."""
    if as_json:
        from dlcli.output_text import json_line

        record = json_line({"event": "error", "exit_code": INTERRUPTED_EXIT_CODE, "message": INTERRUPTED})
        _write(sys.stdout, record)
        _write(sys.stderr, record)
    else:
        _write(sys.stderr, f"error: {INTERRUPTED}")


def _write(stream: object, line: str) -> None:
    try:
        stream.write(line + "\n")  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # a stream that is gone or closed has nobody to tell
        pass
