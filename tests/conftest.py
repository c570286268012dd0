"""Set-up for the whole test session."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile dlcli and the test helpers once, before any test runs.

    Hundreds of tests run dlcli in a subprocess, as a user does. Where PYTHONDONTWRITEBYTECODE is set (as in CI
    here) the import system never writes bytecode, so every one of those processes compiled dlcli's ~150 modules
    from source again: 0.25-0.35 s each on a 2-core machine, and tests/cli/test_cli.py with test_exit_codes.py
    took 94 s instead of 73. Reading bytecode is still allowed; an installed (non-editable) dlcli has it too.
    The files go to the __pycache__ folders that .gitignore lists.
    """
    for package in ("dlcli", "tests"):
        compileall.compile_dir(REPO / package, quiet=1)
