"""Keys and values as the command line writes them: `model.layers[2].units`, and TOML values with bare words.

`--set` (spec/load.py) and the search space's `--param` and `[tune.params]` (spec/search_space.py) read them
the same way; this module imports no spec model, so both can use it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from dlcli.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_KEY_PART = re.compile(r"([A-Za-z0-9_\-]+)|\[(\d+)\]")
_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")  # a TOML key written without quotes
KEY_PATH_FORM = "write it like train.epochs or model.layers[2].units"


class TooDeepError(Exception):
    """Arrays or inline tables nested deeper than the parser's recursion can follow."""


def parse_toml(text: str) -> dict[str, Any]:
    """tomllib.loads, with a document nested too deeply for its recursive parser turned into TooDeepError."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels exhaust Python's stack
        raise TooDeepError("arrays or inline tables are nested too deeply (hundreds of levels) to read; "
                           "no spec needs more than a few") from None


def parse_key(key: str, option: str = "--set") -> list[str | int]:
    """'model.layers[2].units' -> ['model', 'layers', 2, 'units']; `option` names the flag in the error."""
    parts: list[str | int] = []
    for segment in key.split("."):
        matches = list(_KEY_PART.finditer(segment))
        if not segment or "".join(m.group(0) for m in matches) != segment:
            raise SpecError(f"{option} {key}: not a key path; {KEY_PATH_FORM}")
        parts += [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in matches]
    return parts


def parse_value(text: str) -> Any:
    """A TOML value (`3`, `1e-3`, `true`, `"relu"`, `[1, 2]`, `{ type = "adam" }`); a bare word is a string."""
    try:
        return parse_toml(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def display_key(parts: list[str | int] | tuple[Any, ...]) -> str:
    """A key path as errors write it: model.layers[2].units. A key TOML writes in quotes is quoted, as in the file:
    tune.params."model.layers[0].units" is one key of [tune.params], not a path through it."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part) if _BARE_KEY.fullmatch(str(part)) else json.dumps(str(part), ensure_ascii=False)
        out += f".{name}" if out else name
    return out or "(top level)"
