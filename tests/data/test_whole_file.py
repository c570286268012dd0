"""whole_file: a file's bytes in one sized read, the same bytes as Path.read_bytes, and the OS's error as it is."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import files
from dlcli.data.files import whole_file


@pytest.mark.parametrize("size", [0, 1, 10_000, 3_000_001])
def test_whole_file_reads_every_byte(tmp_path: Path, size: int) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes())
    assert whole_file(path) == path.read_bytes() and len(whole_file(str(path))) == size


def test_a_file_longer_than_its_size_said_is_read_to_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "growing.bin"
    path.write_bytes(bytes(range(256)) * 10_000)
    real_fstat = os.fstat

    class Smaller:  # the size fstat gave before the file grew
        def __init__(self, result: os.stat_result) -> None:
            self.st_size = result.st_size // 3

    monkeypatch.setattr(files.os, "fstat", lambda handle: Smaller(real_fstat(handle)))
    assert whole_file(path) == path.read_bytes()


def test_whole_file_raises_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        whole_file(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError):
        whole_file(tmp_path)
