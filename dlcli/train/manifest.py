"""run.json, a run's manifest: what it is, where it came from, and how it stands.

Written when the run begins (before any checkpoint), rewritten atomically at every epoch end and on every way
out: the status is "running" while a process trains it, then "finished", "interrupted" (SIGINT/SIGTERM, after a
checkpoint or before the first), "diverged" (a non-finite loss) or "failed" (any other error). A process killed
outright (SIGKILL, out of memory, power loss) cannot write: its run.json still says "running", and readers show it
as "killed" when no process holds the run's lock (`observed_status`).

Each process that trains the run (train, then every train --resume) adds a session: its command, times,
outcome, world size and thread settings. The top level describes the run: first start, last end, the seed, the
environment and the data it read (sha256 of every file), which `dlcli reproduce` checks.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import signal
import subprocess
from pathlib import Path
from typing import Any

from dlcli import __version__
from dlcli.data.fingerprint import dataset_fingerprint, path_fingerprint
from dlcli.errors import DivergedError, DlcliError, RunInterruptedError
from dlcli.spec.models import RunSpec
from dlcli.train.interrupts import EXIT_CODES, StopSignals
from dlcli.train.run_lock import command_line, lock_holder
from dlcli.train.rundir import RunDirectory

STATUSES = ("running", "finished", "interrupted", "diverged", "failed")
KILLED = "killed"  # what readers show for "running" when no process holds the lock
# the variables that set how many threads BLAS, OpenMP and Numba use, which can change a result's last bits (how
# threads wait, OMP_WAIT_POLICY and OPENBLAS_THREAD_TIMEOUT, changes only the time)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
DATA_KEYS = ("train", "validation", "test")


def now() -> str:
    """The local time with its UTC offset, to the millisecond (ISO 8601): 2026-05-04T16:43:09.123+02:00."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def parse_time(text: Any) -> datetime.datetime | None:
    """A time now() wrote (or run.json's older "created"), None when missing or unreadable."""
    try:
        return datetime.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def status_of(error: BaseException | None) -> str:
    """The status a run ends with: finished without an error, else by the error's kind."""
    if error is None:
        return "finished"
    if isinstance(error, (RunInterruptedError, KeyboardInterrupt)):
        return "interrupted"
    if isinstance(error, DivergedError):
        return "diverged"
    return "failed"


def environment() -> dict[str, Any]:
    """The software and machine a run trains on: what bit-identical results depend on."""
    import numpy as np
    import scipy

    from dlcli.kernels import numba_runtime

    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})  # type: ignore[union-attr]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    numba = numba_runtime()
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba["version"],
            "scipy": scipy.__version__, "blas": f"{blas.get('name', '?')} {blas.get('version', '?')}",
            "platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_model(),
            "hostname": platform.node(), "cpu_count": os.cpu_count(),
            "threads": threads(cpus, int(numba["threads"]))}


def threads(cpus: int | None, numba_threads: int) -> dict[str, Any]:
    """The thread settings: CPUs this process may use, Numba's threads, and the variables that set BLAS's."""
    return {"cpus_available": cpus, "numba": numba_threads,
            **{name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_source(spec_file: Path | None) -> dict[str, Any] | None:
    """The git commit of the spec file's folder, and whether the spec file differs from it; None outside a
    repository or without git."""
    if spec_file is None:
        return None
    folder = spec_file.parent
    environment = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # a status must not take the repository's lock

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                                  env=environment)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    changed = git("status", "--porcelain", "--", spec_file.name)
    return {"commit": commit, "spec_modified": bool(changed), "root": git("rev-parse", "--show-toplevel")}


def data_fingerprints(spec: RunSpec) -> dict[str, Any]:
    """The sha256 of every data file the spec names, by spec key (data.train, ...), or its registry dataset's."""
    data = spec.data
    if data.dataset is not None:
        return {"dataset": {**dataset_fingerprint(data.dataset), "options": data.options}}
    return {key: path_fingerprint(getattr(data, key)) for key in DATA_KEYS if getattr(data, key) is not None}


def session(world_size: int, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """One process that trains the run: its command, start, world size, host, and threads (`env`'s, when the
    environment has been looked at)."""
    return {"command": command_line(), "cwd": os.getcwd(), "started": now(), "ended": None, "status": "running",
            "dlcli_version": __version__, "world_size": world_size, "hostname": platform.node(),
            "threads": env["threads"] if env else None}


def new_manifest(spec: RunSpec, spec_file: Path | None, world_size: int) -> dict[str, Any]:
    """The manifest of a run that begins now, with what is known at once (run_id and replaces are added by the
    run directory); described() adds the environment, the git commit and the data's sha256."""
    first = session(world_size)
    return {"status": "running", "started": first["started"], "ended": None, "command": first["command"],
            "cwd": first["cwd"], "dlcli_version": __version__, "spec_file": str(spec_file) if spec_file else None,
            "git": None, "seed": spec.seed, "world_size": world_size, "environment": None, "data": None,
            "progress": None, "sessions": [first]}


def described(manifest: dict[str, Any], spec: RunSpec, spec_file: Path | None) -> dict[str, Any]:
    """The manifest with what takes a moment to find out: the environment (Numba loads), the spec folder's git
    commit (git runs) and the data files' sha256 (they are read)."""
    env = environment()
    sessions = [dict(each) for each in manifest.get("sessions", [])]
    if sessions:
        sessions[-1]["threads"] = env["threads"]
    return {**manifest, "environment": env, "git": git_source(spec_file), "data": data_fingerprints(spec),
            "sessions": sessions}


def resumed(manifest: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The manifest of a run a new process continues: running again, with a new session."""
    return {**manifest, "status": "running", "ended": None, "error": None,
            "sessions": [*manifest.get("sessions", []), session(world_size, environment())]}


def ended(manifest: dict[str, Any], error: BaseException | None) -> dict[str, Any]:
    """The manifest once its process stops training: the status, the end time, and the error's words."""
    status, end = status_of(error), now()
    sessions = [dict(each) for each in manifest.get("sessions", [])]
    if sessions:
        sessions[-1].update(ended=end, status=status)
    return {**manifest, "status": status, "ended": end, "sessions": sessions,
            "error": None if error is None else str(error).splitlines()[0] if str(error) else type(error).__name__}


def observed_status(run_dir: Path, manifest: dict[str, Any]) -> str:
    """The status to show: the manifest's, except "running" with no process holding the lock: "killed"."""
    status = str(manifest.get("status") or "unknown")
    if status == "running" and lock_holder(run_dir) is None:
        return KILLED
    return status


class ManifestKeeper:
    """run.json as the process that writes the run (rank 0) keeps it: begun, brought up to date, ended. On the
    other ranks every call does nothing."""

    def __init__(self, directory: RunDirectory, leader: bool) -> None:
        self.directory, self.leader = directory, leader
        self.manifest: dict[str, Any] | None = None

    def begin(self, spec: RunSpec, spec_file: Path | None, world_size: int,
              provenance: dict[str, Any] | None) -> str | None:
        """A new run: run.json and spec.json written; returns the run_id (None on other ranks)."""
        if not self.leader:
            return None
        # spec.json and run.json first with what is known at once: from here on the folder holds a run that says
        # so, even if this process is killed while it looks at its environment and hashes its data. A SIGINT or
        # SIGTERM waits until both files are whole (a kill between them would leave a folder neither a new run
        # nor a resume could use), then stops the run with run.json saying so.
        with StopSignals() as held:
            run_id = self.directory.begin(spec.model_dump(mode="json"), manifest={
                **new_manifest(spec, spec_file, world_size), **(provenance or {})})
            self.manifest = self.directory.manifest()
        try:
            if held.requested is not None:
                name = signal.Signals(held.requested).name
                raise RunInterruptedError(f"stopped by {name} as the run began, before its first checkpoint; "
                                          f"continue with: dlcli train {self.directory.path} --resume (it begins "
                                          "again)", exit_code=EXIT_CODES[held.requested])
            self.manifest = described(self.manifest, spec, spec_file)
            self.directory.write_manifest(self.manifest)
        except BaseException as err:  # a Ctrl-C while the run is described, before training's own handling
            self.end(err)
            raise
        return run_id

    def resume(self, spec: RunSpec, run_id: str, world_size: int) -> None:
        """A resumed run: a new session, running; a run from before run.json gets one now."""
        if not self.leader:
            return
        saved = self.directory.manifest()
        self.manifest = resumed(saved, world_size) if saved.get("run_id") else \
            described({"run_id": run_id, "replaces": None, **new_manifest(spec, None, world_size)}, spec, None)
        self.directory.write_manifest(self.manifest)

    def progress(self, **where: Any) -> None:
        """After an epoch's files: where the run stands (epoch, step, best, ...), for `dlcli runs` to read."""
        if self.manifest is not None:
            self.manifest["progress"] = {**where, "updated": now()}
            self.directory.write_manifest(self.manifest)

    def end(self, error: BaseException) -> None:
        """Training stopped on `error`: its status and words. A manifest that cannot be written now must not
        hide the error that stopped the run."""
        if self.manifest is not None:
            with contextlib.suppress(OSError, DlcliError):
                self.manifest = ended(self.manifest, error)
                self.directory.write_manifest(self.manifest)

    def finish(self) -> None:
        """The run finished: status finished, and the run it replaced (--overwrite) goes."""
        if self.manifest is not None:
            self.manifest = ended(self.manifest, None)
        self.directory.finish(self.manifest)
