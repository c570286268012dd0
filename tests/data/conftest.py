"""Every data test runs with its own empty cache and no mirror, so none reads or writes a real cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DLCLI_CACHE at an empty folder and clear the mirror and bundled-folder overrides."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DLCLI_CACHE", str(cache))
    monkeypatch.delenv("DLCLI_DATASETS_MIRROR", raising=False)
    monkeypatch.delenv("DLCLI_BUNDLED_DATASETS", raising=False)
    return cache
