"""The test seam: DLCLI_TEST_CALLBACKS adds a module's callbacks to every run, and the faults' code is in tests/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dlcli.spec.load import validate_spec
from dlcli.train.callbacks import Callback, Run
from dlcli.train.callbacks.injected import SEAM, injected_callbacks
from dlcli.train.fit import fit_run
from tests.train.test_fit import spec_doc, write_blobs

PACKAGE = Path(__file__).resolve().parents[3] / "dlcli"
STARTS: list[str] = []


class Marker(Callback):
    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        STARTS.append(info["run"])


def callbacks() -> list[Callback]:
    """What the seam calls when DLCLI_TEST_CALLBACKS names this module."""
    return [Marker()]


def test_the_seam_adds_the_callbacks_of_the_module_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEAM, __name__)
    STARTS.clear()
    fit_run(validate_spec(spec_doc(write_blobs(tmp_path / "b.npz"), epochs=1), tmp_path / "s.toml"), tmp_path / "r", [])
    assert STARTS == ["blobs"]


def test_without_the_seam_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SEAM, raising=False)
    assert injected_callbacks() == []


def test_dlcli_holds_no_fault_only_the_seam_that_names_them() -> None:
    found = {(path.relative_to(PACKAGE).as_posix(), name) for path in PACKAGE.rglob("*.py")
             for name in re.findall(r"DLCLI_TEST_\w+", path.read_text())}
    assert found == {("train/callbacks/injected.py", "DLCLI_TEST_CALLBACKS")}
