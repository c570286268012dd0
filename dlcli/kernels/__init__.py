"""Numba kernels: pure functions over arrays, compiled on first call and cached on disk.

Nothing here is imported by `dlcli --help`, nor by `dlcli validate` unless it reads a large CSV file of numbers
(csv_numbers.py, the parser); import the family module you need.

Helpers that only other kernels call are compiled with no_cpython_wrapper=True: Numba then generates no
Python entry point for them (the unboxing of every array argument), 0.3-0.5 s less for one GRU's or LSTM's
kernels on an empty cache (about 10-15%, benchmarks/compile_time.py). Python cannot call them; tests do so
through a compiled shim.

Every kernel, and recurrent.py's scalar overloads (no Python entry point either), is compiled with
no_cfunc_wrapper=True: otherwise Numba also builds a C-callable wrapper around each (for numba.cfunc and
first-class function values, which dlcli never makes), one more function to optimise and emit. A small saving: the
CTC spec's seven largest kernels compiled in 12% less CPU without it (alternating in one process, 5 rounds), the
spec's whole first-run compile in 3% less (benchmarks/compile_time.py, 10 pairs run side by side: 124.5 -> 120.8 s
in all, 7 pairs lower); the kernels' own machine code is the same instructions.

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
