"""Forking the child that compiles ahead (train/precompile.py), early or late, and keeping it on a short leash.

The child can be forked at two moments. Late, by start_precompile once the model is built: it inherits the spec
and every module it needs. Early, by `dlcli train` at its start (fork_early): Numba's one-time set-up of its
compiler (0.3-0.45 s, paid by each process's first compile otherwise) then runs on the second core while the
run reads its spec, claims its run directory and builds its model; start_precompile hands the early child the
validated spec (JSON over the pipe, one line), and the child compiles as a late one does. fork_early imports
what the child runs before it forks (the run imports it anyway): a child forked before any import and
importing it all again paid 0.3-0.5 s more CPU for the same wall time (cold runs of mnist_sequences_ctc and
mnist_convnet, one locked run alternating both: 6.75 -> 6.66 s and 2.70 -> 2.67 s of wall, 11.3 -> 10.9 and
4.6 -> 4.3 s of CPU, medians of 3 on a shared machine). This module imports nothing heavy itself, so that
`dlcli train` decides without NumPy or Numba whether to fork.

Either way the child reads a pipe whose other end the run holds: one line, the spec, may come (early children
wait for it); end of file means stop, and the child exits at once, whatever it is doing: the run closes its end
to stop it, and a run that dies however it dies (SIGKILL included) closes it too. The child ignores SIGINT (a
terminal's Ctrl-C reaches the whole process group; the run handles it), closes every file it inherited (an
early child inherits no run directory lock, a late one's would outlive a run killed outright), and prints
nothing (stdout and stderr go to /dev/null). A run that never hands its early child a spec (a spec that fails
validation, a warm cache after all, MPI) kills it and reaps it before `dlcli train` returns.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

# Python's cyclic GC while compiling ahead: a young-generation collection every 100000 net allocations instead
# of 700. Numba's compiler allocates millions of objects, and the default thresholds ran about 1000 collections
# that rescanned its long-lived IR: 0.7-1 s of a 6 s compile (mnist_sequences_ctc, benchmarks/compile_time.py).
# The objects alive when compiling starts are frozen (never rescanned). The run restores its own settings when
# its thread is joined, before its first step; the child keeps these and exits with them. Peak memory: +13 MB.
COMPILE_GC_THRESHOLDS = (100_000, 50, 1000)
_KILL_WAIT = 2.0  # seconds a child told to stop gets to exit before it is killed

_early: ForkedChild | None = None  # the child fork_early started, until start_precompile takes it


class ForkedChild:
    """A forked child compiling ahead: its pid and the end of the pipe it watches."""

    def __init__(self, pid: int, pipe: int) -> None:
        self.pid, self.pipe = pid, pipe

    def send_spec(self, spec: Any) -> bool:
        """Hand an early child the run's spec (a RunSpec, as JSON: never pickled); False when it is gone or the
        spec does not go into JSON (the run then compiles without it)."""
        try:
            line = (json.dumps(spec.model_dump(mode="json"), separators=(",", ":")) + "\n").encode()
        except (TypeError, ValueError):
            return False
        try:
            while line:
                line = line[os.write(self.pipe, line):]
        except OSError:  # the child died (EPIPE): the run compiles without it
            return False
        return True

    def tell_to_stop(self) -> None:
        """Close the pipe: the child exits as soon as it sees the end of it."""
        if self.pipe >= 0:
            os.close(self.pipe)
            self.pipe = -1

    def reap(self, timeout: float = _KILL_WAIT) -> None:
        """Stop the child and wait for it to exit, killing it if it has not after `timeout` seconds."""
        self.tell_to_stop()
        deadline = time.monotonic() + timeout
        try:
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    return
                time.sleep(0.005)
        except (ChildProcessError, ProcessLookupError):  # reaped already (SIGCHLD ignored by the caller)
            pass


def fork_early(processes: int = 1) -> None:
    """At the start of `dlcli train`: fork the child now when the run will want one (module doc): on an empty
    kernel cache, with DLCLI_PRECOMPILE unset or "process", one process, no MPI launcher, and no other thread
    running (a forked child keeps the locks they hold)."""
    global _early
    from dlcli.train.environment import precompile_mode
    from dlcli.train.launcher import under_mpi_launcher

    # not in a process with threads running (dlcli called in-process by a caller): a fork keeps their locks
    if _early is not None or precompile_mode() != "process" or processes != 1 \
            or under_mpi_launcher() or threading.active_count() > 1 or not cache_looks_empty():
        return
    # what the child runs is imported first, here: the run imports it anyway, and a child that imported it again
    # paid 0.5 s more CPU (cold runs of mnist_sequences_ctc: 0.8 s more CPU than a late fork, the same wall time)
    import dlcli.train.precompile_process  # noqa: F401

    _early = fork_child(_early_life)


def take_early_child() -> ForkedChild | None:
    """The child fork_early started, if any, for start_precompile to hand the spec or stop; None after that."""
    global _early
    child, _early = _early, None
    return child


def drop_early_child() -> None:
    """Kill and reap an early child nobody took (`dlcli train` on its way out): it holds nothing yet."""
    child = take_early_child()
    if child is not None:
        child.reap(timeout=0.0)


def cache_looks_empty() -> bool:
    """Whether the kernel cache holds no dlcli kernel, judged without importing Numba: the folder Numba's cache
    locators would pick for dlcli/kernels/ (NUMBA_CACHE_DIR's, else the in-tree __pycache__ and the user-wide
    one) has no index file. kernels/cache.holds_no_kernels asks Numba itself; start_precompile asks it again,
    so a wrong guess here costs a child that is stopped, or a child forked late, never a wrong run."""
    kernels = os.path.dirname(os.path.abspath(Path(__file__).parents[1] / "kernels" / "cache.py"))
    subpath = f"kernels_{hashlib.sha1(kernels.encode()).hexdigest()}"  # numba.core.caching's naming
    if os.environ.get("NUMBA_CACHE_DIR"):
        folders = [Path(os.environ["NUMBA_CACHE_DIR"]) / subpath]
    else:
        user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba" / subpath
        folders = [Path(kernels) / "__pycache__", user]
    return not any(folder.is_dir() and next(folder.glob("*.nbi"), None) is not None for folder in folders)


def fork_child(life: Callable[[int], None]) -> ForkedChild | None:
    """Fork a child that runs `life(pipe)` and exits; None where fork does not exist or fails. The caller has
    no other thread running, so the child has one thread."""
    if not hasattr(os, "fork"):
        return None
    try:
        watched, held = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(watched)
        os.close(held)
        return None
    if pid == 0:  # the child
        try:
            os.close(held)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the run handles it
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the run's handler (train/interrupts.py): just die
            _drop_inherited_files(watched)
            life(watched)
        finally:
            os._exit(0)  # never back into the caller's code; nothing to flush: cache files are written whole
    os.close(watched)
    return ForkedChild(pid, held)


def watch_pipe(fd: int) -> Callable[[], dict[str, Any]]:
    """Read the pipe on a thread of its own: exit the process at its end; returns a function that waits for the
    spec line, if one comes, and returns it decoded."""
    arrived = threading.Event()
    lines: list[bytes] = []

    def read() -> None:
        pending = b""
        while chunk := os.read(fd, 65536):  # b"" at end of file: the run closed the pipe or is gone
            if not lines:
                pending += chunk
                if b"\n" in pending:
                    lines.append(pending.split(b"\n", 1)[0])
                    arrived.set()
        os._exit(0)

    threading.Thread(target=read, name="dlcli-precompile-pipe", daemon=True).start()

    def spec() -> dict[str, Any]:
        arrived.wait()
        return json.loads(lines[0])

    return spec


def _early_life(fd: int) -> None:
    """An early child: imports and Numba's set-up while the run starts, then the spec, then compiling."""
    gc.set_threshold(*COMPILE_GC_THRESHOLDS)
    spec = watch_pipe(fd)
    from dlcli.train.precompile_process import compile_spec, prepare

    prepare()
    gc.freeze()  # what the imports and the set-up made lives on: never rescanned
    compile_spec(spec())


def _drop_inherited_files(keep: int) -> None:
    """Close every file descriptor the parent had open but `keep`, and point stdout and stderr at /dev/null
    (Numba's warnings)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.closerange(3, keep)
    os.closerange(keep + 1, max(keep + 1, os.sysconf("SC_OPEN_MAX")))
