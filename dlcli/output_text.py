"""How dlcli spells a value in what it writes: strict JSON lines, and the quoting of plain `key=value` lines.

Every JSON object dlcli writes (a --json line on stdout or stderr, an --output .jsonl/.json file, a run
directory's JSON files) goes through json_line, so there is one rule for the values JSON itself has no spelling
for. Strict JSON has no NaN or Infinity (Python's bare `NaN` is rejected by jq, JavaScript and most parsers), so a
non-finite float is written as the string "NaN", "Infinity" or "-Infinity": still a value (not null, which
would read as "no value"), and float() parses it back.

Plain lines quote a value that has a space, a quote, a `=` or a `,` (or is empty) as a JSON string, so splitting a
line on spaces and the first `=` still finds every pair; non-ASCII characters stay as they are in quoted and
unquoted values alike, so a path or a class name can be copied from a log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_value(value: Any) -> Any:
    """value made strict-JSON-able: NumPy scalars and arrays unwrapped, paths as strings, and non-finite floats
    as the strings "NaN", "Infinity", "-Infinity"."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # a NumPy scalar or array
        value = value.tolist()  # duck-typed so that importing this module costs no NumPy at start-up
    if isinstance(value, float) and not math.isfinite(value):
        return NONFINITE[str(value)]
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def json_line(value: Any, **options: Any) -> str:
    """value as strict JSON text (no newline; `options` go to json.dumps, e.g. indent)."""
    # allow_nan=False: json_value already spelt every non-finite float, so this only guards the rule
    return json.dumps(json_value(value), allow_nan=False, default=str, **options)


def numbers_from_json(value: Any) -> Any:
    """value as json.loads read it, with the strings json_value wrote for non-finite floats made floats again
    (for metric values read back: a history row, a summary's final and best values)."""
    if isinstance(value, str) and value in NONFINITE.values():
        return float(value)
    if isinstance(value, dict):
        return {key: numbers_from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numbers_from_json(item) for item in value]
    return value


def plain_value_text(text: str) -> str:
    """A string as it appears after `key=` in a plain line: JSON-quoted (non-ASCII kept) when it would otherwise
    break the line's pairs apart or vanish, else as it is."""
    if not text or any(char.isspace() or char in '"=,' for char in text):
        return json.dumps(text, ensure_ascii=False)
    return text
