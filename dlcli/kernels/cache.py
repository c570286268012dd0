"""Where Numba keeps the compiled kernels (for `dlcli warmup` to tell the user), and whether it holds any yet."""

from __future__ import annotations

from pathlib import Path

import numba


def cache_location() -> str:
    """NUMBA_CACHE_DIR when set, else the __pycache__ folder beside the kernels' source files."""
    return numba.config.CACHE_DIR or str(Path(__file__).parent / "__pycache__")


def holds_no_kernels() -> bool:
    """Whether the cache holds no compiled dlcli kernel at all: a fresh machine, container or CI job, whose first
    run compiles every kernel it calls. Every kernel module's index files (*.nbi) share one folder, the one
    Numba names for this package's kernels (a dispatcher's stats say which)."""
    from dlcli.kernels.recurrent import copy_row

    folder = Path(copy_row.stats.cache_path)
    return not folder.is_dir() or next(folder.glob("*.nbi"), None) is None
