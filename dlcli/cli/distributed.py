"""The command line's side of MPI: thread pinning before NumPy loads, `--workers N`, and ending a job on error."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dlcli.errors import RankKilledError, SpecError
from dlcli.train.launcher import INSTALL_COMMAND, abort_after_output, under_mpi_launcher


def abort_job(exit_code: int) -> None:
    """Under MPI with several ranks, end every rank now with `exit_code` (a rank that exits alone leaves the
    others waiting in a collective forever). Does nothing in a single process."""
    comm = _running_job()
    if comm is not None:
        abort_after_output(comm, exit_code)


def wait_for_leader_abort(grace: float = 5.0) -> None:
    """On a rank other than 0 of a running MPI job, after an error: give rank 0 the time to report it and abort
    the job (which ends this process too), so that an error every rank meets (a spec, data or resume error, a
    divergence) is said once, by rank 0, and rank 0 gets to clean up before the job ends. Returns after `grace`
    seconds only if rank 0 did not get there: the error is this rank's own, for it to report."""
    if _running_job() is not None:
        time.sleep(grace)


def _running_job() -> Any:
    """COMM_WORLD of the MPI job this process is a rank of, when it has 2 or more ranks; else None. MPI is never
    initialized here (MPI_Init waits for every rank): `train` connects before it can fail."""
    if not under_mpi_launcher() or "mpi4py" not in sys.modules:
        return None
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
        return MPI.COMM_WORLD
    return None


def find_mpiexec() -> tuple[str, list[str]]:
    """The mpiexec to launch with (the one installed beside this Python first: the mpich wheel's) and the
    options it needs here (Open MPI refuses root and more ranks than cores unless told; MPICH's hydra reports
    each rank's wait status only when asked)."""
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
    if "HYDRA" in version:
        extra.append("-print-all-exitcodes")  # which rank a signal killed: LauncherOutput reads the line
    return found, extra


def check_mpi4py() -> None:
    """`--workers` without the extra: a clear exit 2 with the install command."""
    try:
        import mpi4py  # noqa: F401 - only whether it imports
    except ImportError:
        raise SpecError("--workers needs mpi4py, which is not installed; install the extra with: "
                        f"{INSTALL_COMMAND}") from None


def run_workers(workers: int, dlcli_args: list[str], after_death: str) -> int:
    """Run `dlcli <dlcli_args>` as `workers` MPI ranks under mpiexec; SIGINT/SIGTERM go to the job.

    Returns the job's exit code. A rank killed by a signal is a RankKilledError (exit 128 + its number) whose
    message ends with `after_death`, what the user can do next.
    """
    mpiexec, extra = find_mpiexec()
    command = [mpiexec, *extra, "-n", str(workers), sys.executable, "-m", "dlcli", *dlcli_args]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    # MPICH's single-copy transfer between ranks (CMA) reads the other rank's memory: when that rank is killed
    # mid-transfer, the reader ends the job at once with a fatal error of its own (an MPICH error stack, and exit
    # 143 by chance: its error code's low byte), before mpiexec can report the killed rank (3 of 40 kills here).
    # Without CMA the reader waits and mpiexec reports the death. MPICH documents CMA as off by default; the
    # mpich wheel's build uses it. A value the user set stays.
    env.setdefault("MPIR_CVAR_CH4_CMA_ENABLE", "0")
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        job.send_signal(signum)  # the launcher passes it on to every rank

    from dlcli.report.stream import GuardedStream

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        output = LauncherOutput(GuardedStream(sys.stdout))
        assert job.stdout is not None
        for line in job.stdout:
            output.feed(line.decode(errors="replace"))
        output.close()
        code = job.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if output.killed_by:
        rank = output.killed_rank()
        who = f"rank {rank} of {workers}" if rank is not None else "a rank"
        raise RankKilledError(f"{who} was killed by signal {output.killed_by} ({_signal_name(output.killed_by)}), "
                              f"which ended the job; {after_death}", output.killed_by)
    return 128 - code if code < 0 else code


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown"


# hydra (MPICH's mpiexec) tells how a killed rank ended in a banner on stdout, and with -print-all-exitcodes every
# rank's wait status in a line of its own: not output for the user (--json promises one JSON object a line)
_BANNER_RULE = "=" * 20
_BANNER_TEXT = ("=   ", "YOUR APPLICATION TERMINATED WITH THE EXIT STRING:", "This typically refers to a problem",
                "Please see the FAQ page")
_EXIT_STRING = re.compile(r"EXIT STRING: .*\(signal (\d+)\)")
_EXIT_CODES = re.compile(r"^\[mpiexec@[^\]]*\] Exit codes: (.*)$")


class LauncherOutput:
    """mpiexec's stdout (the ranks' output), passed on line by line, less what hydra says about how the job ended,
    which it reads instead: the signal that killed a rank, and each rank's wait status."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.killed_by = 0  # the signal that killed a rank, by hydra's banner (0: none)
        self.statuses: list[int] = []  # each rank's wait status, in rank order (hydra's exit codes line)
        self._in_banner = False
        self._blank = False  # a blank line held back: the banner begins with one

    def feed(self, line: str) -> None:
        """Take one line of mpiexec's stdout (with its newline)."""
        text = line.rstrip("\r\n")
        codes = _EXIT_CODES.match(text)
        if codes:
            self.statuses = [int(code) for code in re.findall(r"\d+", re.sub(r"\[[^\]]*\]", "", codes.group(1)))]
            return
        if text.startswith(_BANNER_RULE):
            self._in_banner, self._blank = True, False
            return
        if self._in_banner and (not text or text.startswith(_BANNER_TEXT)):
            killed = _EXIT_STRING.search(text)
            if killed:
                self.killed_by = int(killed.group(1))
            return
        if self._blank:
            self._write("\n")
        self._blank = not text
        if text:
            self._write(line)

    def close(self) -> None:
        """The end of the output: a blank line held back goes out."""
        if self._blank:
            self._write("\n")
        self._blank = False

    def killed_rank(self) -> int | None:
        """The rank the signal killed, when the statuses name exactly one."""
        ranks = [rank for rank, status in enumerate(self.statuses) if status & 0x7F == self.killed_by]
        return ranks[0] if len(ranks) == 1 else None

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()  # each line as it comes: --json readers follow the events live
