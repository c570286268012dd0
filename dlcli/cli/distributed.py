"""The command line's side of MPI: thread pinning before NumPy loads, `--workers N`, and ending a job on error."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dlcli.errors import SpecError
from dlcli.train.launcher import INSTALL_COMMAND, abort_after_output, under_mpi_launcher

def abort_job(exit_code: int) -> None:
    """Under MPI with several ranks, end every rank now with `exit_code` (a rank that exits alone leaves the
    others waiting in a collective forever). Does nothing in a single process."""
    if not under_mpi_launcher() or "mpi4py" not in sys.modules:
        return
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
        abort_after_output(MPI.COMM_WORLD, exit_code)


def wait_for_leader_abort(grace: float = 5.0) -> None:
    """On a rank other than 0, after an error every rank raised at the same step: give rank 0 the time to report
    it and abort the job (which ends this process too), so that this rank's own abort cannot end the job before
    the message is out. Returns after `grace` seconds only if rank 0 did not get there."""
    if under_mpi_launcher() and "mpi4py" in sys.modules:
        time.sleep(grace)


def find_mpiexec() -> tuple[str, list[str]]:
    """The mpiexec to launch with (the one installed beside this Python first: the mpich wheel's) and the
    options it needs here (Open MPI refuses root and more ranks than cores unless told)."""
    beside = Path(sys.executable).parent
    for name in ("mpiexec", "mpirun"):
        found = str(beside / name) if (beside / name).exists() else shutil.which(name)
        if found:
            break
    else:
        raise SpecError(f"--workers needs an MPI launcher (mpiexec) and none was found beside {sys.executable} or "
                        f"on PATH; install one with: {INSTALL_COMMAND}")
    extra: list[str] = []
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        extra.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            extra.append("--allow-run-as-root")
    return found, extra


def check_mpi4py() -> None:
    """`--workers` without the extra: a clear exit 2 with the install command."""
    try:
        import mpi4py  # noqa: F401 - only whether it imports
    except ImportError:
        raise SpecError("--workers needs mpi4py, which is not installed; install the extra with: "
                        f"{INSTALL_COMMAND}") from None


def run_workers(workers: int, dlcli_args: list[str]) -> int:
    """Run `dlcli <dlcli_args>` as `workers` MPI ranks under mpiexec; SIGINT/SIGTERM go to the job.

    Returns the job's exit code (128 + n for a rank killed by signal n).
    """
    mpiexec, extra = find_mpiexec()
    command = [mpiexec, *extra, "-n", str(workers), sys.executable, "-m", "dlcli", *dlcli_args]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    job = subprocess.Popen(command, env=env)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        job.send_signal(signum)  # the launcher passes it on to every rank

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = job.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - code if code < 0 else code
