"""Where Numba keeps the compiled kernels (for `dlcli warmup` to tell the user)."""

from __future__ import annotations

from pathlib import Path

import numba


def cache_location() -> str:
    """NUMBA_CACHE_DIR when set, else the __pycache__ folder beside the kernels' source files."""
    return numba.config.CACHE_DIR or str(Path(__file__).parent / "__pycache__")
