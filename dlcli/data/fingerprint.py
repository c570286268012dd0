"""The sha256 of the data a run read: its files, the files in its folders, or a registry dataset's files.

A run's manifest (run.json) keeps these, and `dlcli reproduce` computes them again to check that it trains on
the same bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dlcli import registry
from dlcli.data.download import file_sha256


def path_fingerprint(path: Path) -> dict[str, Any]:
    """{"path", "sha256", "bytes"} of a file; of a folder, one sha256 over its files' relative names and hashes
    (sorted), and how many files it holds."""
    path = Path(path)
    if not path.is_dir():
        return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    digest, count, size = hashlib.sha256(), 0, 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
        count, size = count + 1, size + file.stat().st_size
    return {"path": str(path), "sha256": digest.hexdigest(), "bytes": size, "files": count}


def dataset_fingerprint(name: str) -> dict[str, Any]:
    """A registry dataset's files and the sha256 each must have: loading verifies every one of them, so these
    are the bytes the run read."""
    from dlcli.data.catalog import BUNDLED_SHA256  # noqa: F401 - registers the datasets

    info = registry.datasets.get(name).info
    if info.bundled:
        files = {filename: BUNDLED_SHA256[filename] for filename in info.bundled_files}
    else:
        files = {file.filename: file.sha256 for file in info.remote}
    return {"dataset": name, "files": files}
