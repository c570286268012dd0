"""The environment variables that steer a dlcli process, read and checked in one place.

Kept free of NumPy and Numba: the command line checks them before either loads (Numba reads its thread count,
and OpenBLAS its own, once at import). A value dlcli cannot use is an error naming the variable, never taken
silently for something else (DLCLI_PRECOMPILE=OFF used to act as "thread", OMP_NUM_THREADS=abc was recorded
in run.json as if it were in force).
"""

from __future__ import annotations

import os
import re

from dlcli.errors import SpecError

PRECOMPILE_MODES = ("process", "thread", "off")
# OpenMP's own syntax: a thread count, or one per nesting level ("4,2"); the first is what the kernels use
_THREAD_COUNTS = re.compile(r"\s*([0-9]+)\s*(,\s*[0-9]+\s*)*")


def precompile_mode() -> str:
    """DLCLI_PRECOMPILE: "process" (unset or empty), "thread" or "off", in any case; SpecError for another value."""
    value = os.environ.get("DLCLI_PRECOMPILE", "").strip().lower()
    if not value:
        return "process"
    if value not in PRECOMPILE_MODES:
        raise SpecError(f"DLCLI_PRECOMPILE={os.environ['DLCLI_PRECOMPILE']!r}: must be one of "
                        f"{', '.join(PRECOMPILE_MODES)} (see docs/cli.md, Environment), or unset for process")
    return value


def omp_threads() -> int | None:
    """OMP_NUM_THREADS as a thread count (the first of a nested list), None when unset or empty; SpecError for a
    value that is not a positive whole number."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if not value.strip():
        return None
    match = _THREAD_COUNTS.fullmatch(value)
    if match is None or int(match.group(1)) < 1:
        raise SpecError(f"OMP_NUM_THREADS={value!r}: must be a positive whole number of threads, e.g. "
                        "OMP_NUM_THREADS=2 (or unset it to use every core)")
    return int(match.group(1))


def apply_environment() -> None:
    """Check the variables dlcli reads, then make OMP_NUM_THREADS limit the Numba kernels too, as docs/cli.md says:
    they split their work into numba.get_num_threads() parts, which NUMBA_NUM_THREADS (the core count when unset)
    decides when Numba loads. A NUMBA_NUM_THREADS the user set is left alone. Must run before Numba loads."""
    precompile_mode()
    threads = omp_threads()
    if threads is not None:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
