"""Who started this process: an MPI launcher or not, and how many threads each rank may use.

Kept free of NumPy, so the command line can ask before NumPy (and its BLAS) loads.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

INSTALL_COMMAND = "pip install 'dlcli[mpi]'"
# the launcher forwards each rank's output through a pipe, and an MPI abort kills it at once: a message written
# just before the abort must be given this long to get out (CI twice saw a failed job end with empty stderr)
OUTPUT_GRACE_SECONDS = 0.5
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# ranks on this machine, as the launchers of MPICH (hydra), Open MPI and Slurm tell it
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "PMI_SIZE",
                         "OMPI_COMM_WORLD_SIZE")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def under_mpi_launcher() -> bool:
    """True when mpiexec, mpirun or srun started this process."""
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def pin_threads() -> None:
    """Under an MPI launcher, give each rank cores / ranks-on-this-machine BLAS and Numba threads (at least 1).

    Must run before NumPy loads: OpenBLAS reads its thread count once. A count the user set is left alone.
    """
    if not under_mpi_launcher():
        return
    local = 1
    for name in _LOCAL_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            local = int(value)
            break
    threads = str(max(1, usable_cores() // local))
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, threads)


def launcher_rank() -> int:
    """This process's rank as the launcher numbered it (0 outside MPI)."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def abort_after_output(comm: Any, exit_code: int) -> None:
    """End every rank of `comm`'s job with `exit_code`, after giving the launcher time to pass on what this
    rank has written (an error message, most often, which would otherwise be lost with the job)."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(OUTPUT_GRACE_SECONDS)
    # MPICH prints "Abort(3) on node 0 (rank 0 in comm 0): application called MPI_Abort(...)" to stderr: a second
    # message after the one paragraph that said why
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    comm.Abort(exit_code)
