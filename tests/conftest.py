"""Set-up for the whole test session."""

from __future__ import annotations

import compileall
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist each worker compiles into a kernel cache of its own, set before anything imports Numba (which
# reads it once) and inherited by every process the worker's tests start: two processes adding signatures of one
# kernel to one cache at once can leave an index that points at the other's machine code (kernels/cache.py).
# Without NUMBA_CACHE_DIR the workers' caches go where Numba's would (__pycache__ beside the kernels).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    _SHARED = os.environ.get("NUMBA_CACHE_DIR") or str(REPO / "dlcli" / "kernels" / "__pycache__")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(_SHARED, f"xdist-{_WORKER}")


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
