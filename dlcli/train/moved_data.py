"""A resumed run whose data files moved with its workspace (a CI cache restored at another path, a project folder
renamed): the run's spec names them by absolute path, and run.json holds each one's sha256 (data_fingerprints).

A data path is followed to its new place only when the file there has the sha256 the run recorded: the same
bytes, so the same examples in the same order, and the resume stays exact. Anything else is still refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dlcli.data.fingerprint import path_fingerprint
from dlcli.train.manifest import DATA_KEYS
from dlcli.train.rundir import MANIFEST


def recorded_data(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """run.json's data fingerprints by key (train, validation, test) and the first session's working folder; empty
    when the run recorded none (it was stopped before, or run.json is unreadable: then nothing is followed)."""
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}, None
    data = manifest.get("data") if isinstance(manifest, dict) else None
    return (data if isinstance(data, dict) else {}), manifest.get("cwd")


def is_same_data(recorded: dict[str, Any], key: str, path: str | Path | None) -> bool:
    """Whether `path` holds the bytes the run recorded for data.`key` (a file's or a folder's sha256)."""
    fingerprint = recorded.get(key)
    if path is None or not isinstance(fingerprint, dict) or "sha256" not in fingerprint or not Path(path).exists():
        return False
    try:
        return path_fingerprint(Path(path))["sha256"] == fingerprint["sha256"]
    except OSError:
        return False


def follow_moved_data(document: dict[str, Any], run_dir: Path, notes: list[str]) -> dict[str, Any]:
    """The saved spec `document` with each data path that is gone replaced by the same file under the current
    working folder, at the place it had under the run's first working folder (the workspace moved, and the run
    resumes from inside it, as it was trained); only where the sha256 matches. Says so in `notes`."""
    recorded, old_cwd = recorded_data(run_dir)
    data = document.get("data")
    if not old_cwd or not isinstance(data, dict):
        return document
    for key in DATA_KEYS:
        old = data.get(key)
        if not isinstance(old, str) or not os.path.isabs(old) or Path(old).exists():
            continue
        try:
            moved = Path.cwd() / Path(old).relative_to(old_cwd)
        except ValueError:  # it was not inside the working folder: nothing says where it went
            continue
        if is_same_data(recorded, key, moved):
            data[key] = str(moved)
            notes.append(f"data.{key}: {old} is gone; {moved} has the same sha256, so the run continues on it")
    return document


def moved_data_changes(changes: list[tuple[str, Any, Any]], run_dir: Path, notes: list[str]
                       ) -> list[tuple[str, Any, Any]]:
    """The spec changes left once a data path that only moved (its file has the recorded sha256) is taken out;
    each one taken out is said in `notes`."""
    recorded, _ = recorded_data(run_dir)
    kept = []
    for key, old, new in changes:
        part = key.removeprefix("data.")
        if part in DATA_KEYS and key == f"data.{part}" and old != new and is_same_data(recorded, part, new):
            notes.append(f"{key}: {old} -> {new}, the same sha256: the data moved, the run continues on it")
            continue
        kept.append((key, old, new))
    return kept
