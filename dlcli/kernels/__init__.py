"""Numba kernels: pure functions over arrays, compiled on first call and cached on disk.

Nothing here is imported by `dlcli --help`, nor by `dlcli validate` unless it reads a large CSV file of numbers
(csv_numbers.py, the parser); import the family module you need.

Helpers that only other kernels call are compiled with no_cpython_wrapper=True: Numba then generates no
Python entry point for them (the unboxing of every array argument), 0.3-0.5 s less for one GRU's or LSTM's
kernels on an empty cache (about 10-15%, benchmarks/compile_time.py). Python cannot call them; tests do so
through a compiled shim.

Kernels that split work over threads are nogil kernels run on plain threads (parts.in_parts), not prange:
a parfor costs 0.5-3 s more to compile (parts.py). A kernel that does use prange runs on Numba's OpenMP
pool, whose threads must sleep, not spin, when a kernel ends: spinning threads took the cores from OpenBLAS
and made the next matrix product 2-6x slower (measured here). OMP_WAIT_POLICY is read when the OpenMP runtime
loads, so it is set before any kernel runs, unless the user chose a policy.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def numba_runtime() -> dict[str, object]:
    """Numba's version and how many threads its parallel kernels use (for a run's manifest): the configured
    count, read without starting the thread pool (get_num_threads() would start it)."""
    import numba

    return {"version": numba.__version__, "threads": numba.config.NUMBA_NUM_THREADS}
