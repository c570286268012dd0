"""Where Numba keeps the compiled kernels (for `dlcli warmup` to tell the user), whether it holds any yet, and
the turn-taking that lets two processes fill it at once (train/precompile.py)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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


def prepare_compiler() -> None:
    """Numba's one-time set-up of its CPU target, which a process's first compile pays otherwise (0.3-0.45 s:
    its typing and lowering registries, whose modules import SciPy's BLAS bindings): a process with a core to
    spare pays it before it has anything to compile (train/precompile_fork.py's early child)."""
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()
    cpu_target.typing_context.refresh()


class ClaimedElsewhereError(Exception):
    """Another process is compiling this kernel signature (raised instead of waiting, see below)."""


def share_compiles_between_processes(wait: bool = True) -> bool:
    """Let processes that fill one cache at once (train/precompile.py's run and its child) compile each kernel
    signature once between them; False where flock does not exist, and nothing changes.

    Two changes to Numba's cache, both through flock on files in the cache folder, which the kernel releases when
    a process dies however it dies. Writes take turns: an entry is two writes, the kernel's index (signature ->
    data file name: read, extended, rewritten) and then its data file, and two processes adding signatures of one
    kernel at once can pick the same free data file name, so that the index of one points at the other's machine
    code. And a signature is claimed: a process that misses it in the cache holds a claim while it compiles, and
    another that misses it too waits for the claim (at most _CLAIM_WAIT s) and then loads what the first saved,
    instead of compiling it a second time; without `wait`, the call that wanted it raises ClaimedElsewhereError
    instead (for a process with other work to do meanwhile), unless it is a kernel that one this process is
    compiling calls (a helper both need): giving up there would throw the caller's compile away. Claims are taken
    callers first, as Numba compiles a kernel's callees inside its own compile: a process waits only while it
    holds the claims of the callers it is compiling, and the calls between kernels form no cycle, so no two
    processes wait for each other.
    """
    try:
        import fcntl
    except ImportError:
        return False
    from numba.core import caching, event, sigutils

    _waits[0] = wait  # a process forked from one that shares already has the patches: only this changes
    if getattr(caching.Cache.load_overload, "shares", False):
        return True
    load, save, write = caching.Cache.load_overload, caching.Cache.save_overload, caching.IndexDataCacheFile.save

    def load_or_claim(self: caching.Cache, sig: Any, target_context: Any) -> Any:
        found = load(self, sig, target_context)
        if found is not None or not self._enabled:
            return found
        path = _claim_path(self, sigutils.normalize_signature(sig)[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            claim = open(path, "a")
        except OSError:
            return None  # a folder it cannot write: Numba will not save there either
        deadline = time.monotonic() + _CLAIM_WAIT
        while True:
            try:
                fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # the other process compiles it: wait for it
                if not _waiting() and not _claims:  # a callee of a kernel this process compiles is waited for
                    claim.close()
                    raise ClaimedElsewhereError(path.name) from None
                if time.monotonic() > deadline:
                    claim.close()
                    return None  # compile it here after all
                time.sleep(0.005)
        # looked up again even without waiting: the other may have saved and released it since the first look
        found = load(self, sig, target_context)
        if found is not None:
            path.unlink(missing_ok=True)  # the claim of a process gone mid-compile would stay otherwise
            claim.close()
            return found
        _claims[path] = claim
        return None

    def save_and_release(self: caching.Cache, sig: Any, data: Any) -> None:
        try:
            save(self, sig, data)
        finally:
            _release(_claim_path(self, sigutils.normalize_signature(sig)[0]))

    def write_in_turn(self: caching.IndexDataCacheFile, key: object, data: object) -> None:
        with open(Path(self._cache_path) / "dlcli-index.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write(self, key, data)  # the lock goes with the file's closing

    class _ReleaseOnFailure(event.Listener):
        """A compile that raises saves nothing: its claims go (the waiting process then compiles)."""

        def on_start(self, ev: event.Event) -> None:
            pass

        def on_end(self, ev: event.Event) -> None:
            details = getattr(ev, "_exc_details", None)  # Event.is_failed says the opposite (numba 0.68.1)
            cache = getattr(ev.data["dispatcher"], "_cache", None)
            if details and details[0] is not None and isinstance(cache, caching.Cache):
                _release(_claim_path(cache, ev.data["args"]))

    load_or_claim.shares = True  # type: ignore[attr-defined]
    caching.Cache.load_overload, caching.Cache.save_overload = load_or_claim, save_and_release
    caching.IndexDataCacheFile.save = write_in_turn
    event.register("numba:compile", _ReleaseOnFailure())
    return True


_CLAIM_WAIT = 60.0  # seconds a process waits for another's compile of a kernel before compiling it itself
_claims: dict[Path, IO[str]] = {}  # this process's claims: signatures it is compiling
_waits = [True]  # whether a kernel another process compiles is waited for (share_compiles_between_processes)


class _ThreadSkips(threading.local):
    skips = False  # claimed_kernels_skipped's setting for this thread


_thread = _ThreadSkips()


@contextlib.contextmanager
def claimed_kernels_skipped() -> Iterator[None]:
    """Within the block, a kernel another process is compiling raises ClaimedElsewhereError on this thread instead
    of being waited for, as share_compiles_between_processes(wait=False) makes it for the whole process: the
    run's compiling thread (train/precompile.py) skips it while the run's other threads still wait."""
    before, _thread.skips = _thread.skips, True
    try:
        yield
    finally:
        _thread.skips = before


def skips_claimed_kernels() -> bool:
    """Whether this thread skips a kernel another process is compiling (claimed_kernels_skipped)."""
    return _thread.skips


def _waiting() -> bool:
    return _waits[0] and not _thread.skips


def _claim_path(cache: Any, args: tuple) -> Path:
    """The claim file of one signature (argument types) of one kernel; the same name in every process."""
    name = f"{cache._cache_file._index_name}|{tuple(args)}"
    return Path(cache._cache_path) / f"dlcli-claim-{hashlib.sha1(name.encode()).hexdigest()[:20]}"


def _release(path: Path) -> None:
    claim = _claims.pop(path, None)
    if claim is not None:
        path.unlink(missing_ok=True)  # a process that opens it afterwards finds the kernel saved
        claim.close()
