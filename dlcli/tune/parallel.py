"""`dlcli tune --jobs J`: J worker processes run trials of one study at once; this process opens the study,
relays the workers' events to its own output, and writes best.toml when they are done.

Each worker is `dlcli tune ... --worker` with its share of the machine's threads (BLAS and Numba threads split
J ways), JSON events on its stdout, and on Linux a parent-death signal: if this process is killed, its workers
get SIGTERM, checkpoint their trials and stop, so that the next run can settle or resume them.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

from dlcli.errors import CheckpointError, DataError, DivergedError, DlcliError, RunInterruptedError, SpecError
from dlcli.train.interrupts import EXIT_CODES, StopSignals
from dlcli.train.launcher import THREAD_VARIABLES, usable_cores
from dlcli.tune.events import TuneObserver, dispatch
from dlcli.tune.search import Search, finish_search, open_search, study_info

_ERRORS = {2: SpecError, 3: DataError, 4: CheckpointError, 5: DivergedError}


def run_parallel(search: Search, observer: TuneObserver, jobs: int, worker_args: list[str]) -> dict[str, Any]:
    """Run the search in `jobs` worker processes (`python -m dlcli tune` + worker_args); returns the summary."""
    started = time.monotonic()
    _, study = open_search(search)
    observer.on_study_begin({**study_info(search, study), "jobs": jobs})
    environment = worker_environment(jobs)
    command = [sys.executable, "-m", "dlcli", "tune", *worker_args, "--worker"]
    with StopSignals() as signals:
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
                                    preexec_fn=_die_with_parent) for _ in range(jobs)]
        errors = _relay(workers, observer, signals)
    codes = [worker.wait() for worker in workers]
    if signals.requested:
        raise RunInterruptedError(f"stopped by {signal.Signals(signals.requested).name}: every worker checkpointed "
                                  f"its trial; continue the study with the same command (those trials are then "
                                  "recorded as failed), or add --resume-trials to finish them",
                                  exit_code=EXIT_CODES[signals.requested])
    failed = [(index, code) for index, code in enumerate(codes) if code != 0]
    if failed:
        index, code = failed[0]
        message = errors.get(index) or f"it exited with code {code}"
        error = _ERRORS.get(code, DlcliError)(f"worker {index + 1} of {jobs} stopped: {message}")
        if error.exit_code != code and code > 0:
            error.exit_code = code
        raise error
    return finish_search(search, study, time.monotonic() - started, observer)


def worker_environment(jobs: int) -> dict[str, str]:
    """This process's environment with the threads split: OMP_NUM_THREADS (or the cores) // jobs each, at least 1,
    for OpenMP, OpenBLAS, MKL and Numba alike."""
    environment = dict(os.environ)
    given = environment.get("OMP_NUM_THREADS", "")
    total = int(given) if given.isdigit() and int(given) > 0 else usable_cores()
    for name in THREAD_VARIABLES:
        environment[name] = str(max(1, total // jobs))
    return environment


def _die_with_parent() -> None:
    """In a worker, before it runs: SIGTERM when its parent dies (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _relay(workers: list[subprocess.Popen[bytes]], observer: TuneObserver, signals: StopSignals) -> dict[int, str]:
    """Pass the workers' events to the observer and their other stderr lines to ours until every pipe closes;
    a signal to this process is passed on to them. Returns each worker's error message, by index."""
    selector = selectors.DefaultSelector()
    pending: dict[int, bytes] = {}
    for index, worker in enumerate(workers):
        for kind, stream in (("out", worker.stdout), ("err", worker.stderr)):
            assert stream is not None
            selector.register(stream.fileno(), selectors.EVENT_READ, (index, kind))
            pending[stream.fileno()] = b""
    errors: dict[int, str] = {}
    forwarded = False
    while selector.get_map():
        if signals.requested and not forwarded:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signals.requested)
            forwarded = True
        for key, _ in selector.select(timeout=0.2):
            fd, (index, kind) = key.fd, key.data
            chunk = os.read(fd, 1 << 16)  # raw reads: a buffered reader could hold a line the selector never shows
            if not chunk:
                selector.unregister(fd)
                lines = [pending.pop(fd)] if pending.get(fd) else []
            else:
                *lines, pending[fd] = (pending[fd] + chunk).split(b"\n")
            for line in lines:
                _take(line.decode(errors="replace"), index, kind, observer, errors)
    return errors


def _take(line: str, index: int, kind: str, observer: TuneObserver, errors: dict[int, str]) -> None:
    """One line from a worker: its error event kept, its other events relayed, anything else on stderr."""
    record = _json(line)
    if record is not None and record.get("event") == "error":
        errors.setdefault(index, str(record.get("message")))
    elif kind == "out" and record is not None:
        dispatch(observer, record)
    elif kind == "err" and line.strip():
        sys.stderr.write(line + "\n")


def _json(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
