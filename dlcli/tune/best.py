"""best.toml: the whole spec with the best trial's values, ready for `dlcli train best.toml`.

Written with tomli-w (TOML out; the standard library only reads it): the spec document as its file had it, with
the --set overrides and the best values set at their keys, without the [tune] table, and with relative data
paths rewritten to stay right from the study folder. Comments at the top say where it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlcli.checkpoint import write_atomically
from dlcli.errors import SpecError
from dlcli.spec.keys import toml_value
from dlcli.tune.space import SearchSpace
from dlcli.tune.study import INSTALL, SearchRecord

DATA_PATHS = ("train", "test", "validation")


def best_document(record: SearchRecord, space: SearchSpace, params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The spec document of a trial's values, its relative data paths made relative to `folder`."""
    document = space.apply(record.document, params)
    document.pop("tune", None)
    data = document.get("data")
    spec_folder = Path(record.spec_path).parent
    if isinstance(data, dict):
        for key in DATA_PATHS:
            value = data.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                data[key] = os.path.relpath(os.path.abspath(spec_folder / value), os.path.abspath(folder))
    return document


def write_best_toml(path: Path, record: SearchRecord, space: SearchSpace, best: Any, study_name: str,
                    trials: int) -> None:
    """Write best.toml for the best trial (Optuna's FrozenTrial: number, value, params as Optuna stores them)."""
    try:
        import tomli_w
    except ImportError:
        raise SpecError(f"writing best.toml needs tomli-w, which is not installed: {INSTALL}") from None
    document = best_document(record, space, dict(best.params), path.parent)
    values = "\n".join(f"#   {key} = {toml_value(value)}" for key, value in space.values(dict(best.params)).items())
    header = (f"# Written by dlcli tune: the best of {trials} trials of study {study_name!r}, from "
              f"{Path(record.spec_path).name}.\n"
              f"# Trial {best.number}: {record.metric} = {best.value} ({record.direction}), with\n"
              f"{values}\n")
    write_atomically(path, (header + "\n" + tomli_w.dumps(document)).encode())
