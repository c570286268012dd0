"""A run directory's lock: an exclusive `flock` on DIR/.lock that holds "PID\\ncommand" for others to read.

The kernel drops a flock with its holder, so a killed run never blocks the next one. Readers (`dlcli runs`) ask
whether a lock is held without taking it: /proc/locks lists every flock with its PID and inode.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from dlcli.errors import RunDirectoryTakenError, SpecError

LOCK = ".lock"
PROC_LOCKS = Path("/proc/locks")


def acquire(path: Path) -> int:
    """An exclusive, non-blocking lock on path/.lock, with our PID and command written in it for others to read.

    After locking, the lock file must still be the one at that name: a claim that was just abandoned unlinks
    it, and a lock on an unlinked file would guard nothing. OSError from opening the file is the caller's to
    word; a lock another process holds raises RunDirectoryTakenError naming it.
    """
    lock_path = path / LOCK
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(fd):
            message = held_message(path)
            os.close(fd)
            raise RunDirectoryTakenError(message)
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                # surrogateescape: in a non-UTF-8 locale argv holds undecodable bytes as surrogates; they go back
                # to disk as the bytes the user typed (readers decode with errors="replace")
                os.write(fd, f"{os.getpid()}\n{command_line()}\n".encode(errors="surrogateescape"))
            except BaseException:  # a claim that failed leaves no lock file behind to half-claim the folder
                lock_path.unlink(missing_ok=True)
                release(fd)
                raise
            return fd
        release(fd)
    raise SpecError(f"run directory {path}: could not take its lock; another process keeps replacing {lock_path}")


def refuse_held(path: Path) -> None:
    """RunDirectoryTakenError naming the holder when another process holds path/.lock; nothing is created."""
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except OSError:
        return
    try:
        held = not try_lock(fd)
    finally:
        os.close(fd)
    if held:
        raise RunDirectoryTakenError(held_message(path))


def held_message(path: Path) -> str:
    return (f"run directory {path} is being written by {_holder(path / LOCK)}; one process writes a run directory "
            "at a time: wait for it to finish, or give this run another --run-dir")


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops a flock


def lock_holder(path: Path) -> int | None:
    """The PID of the process that holds path/.lock, or None when no process does; the lock is not taken.

    Read from /proc/locks (Linux): an flock on the lock file's inode, held by the PID the file names (the inode
    alone could match a file on another device). Where /proc/locks is missing, the PID the file names is taken
    for the holder if that process is alive.
    """
    lock_path = path / LOCK
    try:
        inode = os.stat(lock_path).st_ino
        lines = lock_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    written = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    try:
        table = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return written if written is not None and _alive(written) else None
    for line in table:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":  # "->": a waiter, not the holder
            continue
        pid, where = fields[4], fields[5].rsplit(":", 1)
        if len(where) == 2 and where[1] == str(inode) and pid.isdigit() and (written is None or
                                                                             int(pid) == written):
            return int(pid)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on the open file `fd` if no process holds it (never waits); it dies with us."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the C runtime's byte-range lock, also dropped on exit
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(lock_path: Path) -> str:
    """'PID 1234 (dlcli train spec.toml)' from a held lock file; its writer may not have written yet."""
    for _ in range(20):
        try:
            lines = lock_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        if lines and lines[0].strip().isdigit():
            command = f" ({lines[1]})" if len(lines) > 1 and lines[1] else ""
            return f"PID {lines[0].strip()}{command}"
        time.sleep(0.01)
    return "another process"


def command_line() -> str:
    """How this process was started, as a user would type it."""
    args = list(sys.argv)
    if args and Path(args[0]).name in ("dlcli", "__main__.py"):
        args[0] = "dlcli"
    return " ".join(args)
