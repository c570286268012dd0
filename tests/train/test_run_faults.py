"""Faults while a run writes its files (a full disk at each file, kills at any time) leave files that agree."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from dlcli.errors import CheckpointError
from tests.train.run_invariants import assert_run_consistent
from tests.train.test_fit import fit, spec_doc, write_blobs


def full_disk_at(monkeypatch: pytest.MonkeyPatch, marker: str, occurrence: int) -> dict[str, int]:
    """Make the `occurrence`-th write of a file whose temporary name contains `marker` fail as a full disk does."""
    real_open, real_write = os.open, os.write
    doomed: set[int] = set()
    seen = {"opened": 0}

    def opening(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        fd = real_open(path, flags, mode, **kwargs)
        if marker in os.fspath(path) and ".tmp-" in os.fspath(path):
            seen["opened"] += 1
            if seen["opened"] == occurrence:
                doomed.add(fd)
        return fd

    def writing(fd: int, data: Any) -> int:
        if fd in doomed:
            real_write(fd, bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def linking(source: Any, destination: Any, **kwargs: Any) -> None:
        # an improved epoch's `last` is a hard link to its `best`: a new name in a full folder can fail too
        if marker in os.fspath(destination) and ".tmp-" in os.fspath(destination):
            seen["opened"] += 1
            if seen["opened"] == occurrence:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_link(source, destination, **kwargs)

    real_link = os.link
    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "write", writing)
    monkeypatch.setattr(os, "link", linking)
    return seen


@pytest.mark.parametrize("marker,occurrence", [
    ("best.safetensors", 3), ("last.safetensors", 3), ("history.jsonl", 3), ("history.csv", 2),
    ("summary.json", 1), ("spec.json", 1), ("run.json", 1),
])
def test_a_full_disk_at_any_file_leaves_a_run_whose_files_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              marker: str, occurrence: int) -> None:
    data = write_blobs(tmp_path / "blobs.npz")
    run = tmp_path / "run"
    # the monitored value improves every epoch here, so best is written at every epoch end
    doc = spec_doc(data, epochs=5, monitor="loss")
    full_disk_at(monkeypatch, marker, occurrence)
    with pytest.raises(CheckpointError, match="No space left on device"):
        fit(doc, run)
    monkeypatch.undo()
    assert not list(run.rglob(".*.tmp-*")), "a failed write leaves no temporary file"
    assert_run_consistent(run)
