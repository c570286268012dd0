"""A run directory: owned by one run under an exclusive lock, holding its manifest, resolved spec, history
files, summary, and checkpoints of model + optimizer + RNG (what they hold: train/run_checkpoints.py).

Ownership rules (SPEC.md): a fresh run never writes into a folder that holds anything; `--overwrite` moves
the old run aside in one rename first; one process writes a run directory at a time (`flock` on DIR/.lock,
released by the kernel when its holder dies, so a killed run never blocks the next one).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from dlcli import __version__
from dlcli.checkpoint import sync_folder, write_atomically
from dlcli.errors import CheckpointError, RunDirectoryTakenError, SpecError
from dlcli.output_text import json_line
from dlcli.train.run_lock import LOCK, acquire, refuse_held, release

CHECKPOINTS = "checkpoints"
SUFFIX = ".safetensors"
MANIFEST = "run.json"
# what os.link raises where a file system or platform has no hard links: a copy does instead
NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EACCES}


def checkpoint_path(run_dir: Path, kind: str) -> Path:
    """runs/<name>/checkpoints/<kind>.safetensors."""
    return run_dir / CHECKPOINTS / f"{kind}{SUFFIX}"


def finite_for_json(value: Any) -> Any:
    """A checkpoint's metadata made JSON-able: non-finite floats become null (a resume reads null back as
    "no value yet"); the run directory's JSON files spell them as dlcli/output_text.py says."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_for_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_for_json(v) for v in value]
    return value


def is_stale_temporary(name: str) -> bool:
    """Whether a file in a run directory is the temporary file of an atomic write (.NAME.tmp-PID): once the
    folder's lock is ours, one its killed writer left."""
    return re.fullmatch(r"\..+\.tmp-\d+", name) is not None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temp files a killed writer left in the run directory (never a finished checkpoint)."""
    for folder in (run_dir, run_dir / CHECKPOINTS):
        if folder.is_dir():
            for leftover in folder.glob(".*.tmp-*"):
                if is_stale_temporary(leftover.name):
                    leftover.unlink(missing_ok=True)


def keep_as_previous(run_dir: Path) -> None:
    """Keep checkpoints/last as checkpoints/previous before it is replaced, without `last` ever going missing."""
    if checkpoint_path(run_dir, "last").is_file():
        link_checkpoint(run_dir, "last", "previous")


def link_checkpoint(run_dir: Path, source: str, target: str) -> None:
    """checkpoints/<target> becomes the file checkpoints/<source> is, and never goes missing on the way: a hard
    link (a copy where links are not supported) under a temporary name, renamed into place. The data is already
    whole on disk (its write fsynced it): only the folder's fsync is left, which sync_folder does or defers."""
    origin, destination = checkpoint_path(run_dir, source), checkpoint_path(run_dir, target)
    temp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    temp.unlink(missing_ok=True)
    try:
        try:
            os.link(origin, temp)
        except OSError as err:
            if err.errno not in NO_LINKS:
                raise
            shutil.copyfile(origin, temp)
        os.replace(temp, destination)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot keep {origin} as {destination.name}: {err.strerror or err}; check that the "
                              "folder is writable and has free space") from err
    sync_folder(destination.parent)


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    write_atomically(path, (json_line(value, indent=2) + "\n").encode())


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.jsonl (one epoch a line) and history.csv (a column per value), rewritten atomically."""
    lines = "".join(json_line(row) + "\n" for row in history)
    write_atomically(run_dir / "history.jsonl", lines.encode())
    columns = list(dict.fromkeys(key for row in history for key in row))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_atomically(run_dir / "history.csv", table.getvalue().encode())


def _is_empty(path: Path) -> bool:
    """Whether a folder holds nothing but a lock file and temporary files: what a run that claimed it leaves when
    it is stopped before its first file is whole (a SIGTERM or SIGKILL in the middle of writing spec.json). A
    living writer of such a folder still holds its lock, which refuses the next claim."""
    return all(entry.name == LOCK or is_stale_temporary(entry.name) for entry in path.iterdir())


def _folder_error(path: Path, err: OSError, doing: str, fix: str = "choose a folder you can write (--run-dir DIR)"
                  ) -> Exception:
    """A run-directory OSError as one paragraph naming the path, a SpecError (exit 2): a run directory that cannot
    be created or written is an output that cannot be written (SPEC.md's 4 is for a checkpoint that is missing,
    corrupt or incompatible, and a script branching on 4 would take the wrong path)."""
    if err.errno == errno.ENAMETOOLONG:
        return SpecError(f"--run-dir {path}: a name in it is longer than this system allows ({err.strerror}); "
                         "choose a shorter path")
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOTDIR, errno.EEXIST) or (path.exists() and not path.is_dir()):
        reason = "a part of the path is a file, not a folder"
    return SpecError(f"cannot {doing} run directory {path}: {reason}; {fix}")


class RunDirectory:
    """A run directory this process writes, held under an exclusive lock from its claim until close().

    Only the process that writes (rank 0 under MPI) holds one; `locked` is False for a path-only handle.
    """

    def __init__(self, path: Path, lock_fd: int | None = None, created: bool = False,
                 replaced: Path | None = None) -> None:
        self.path, self.lock_fd, self.created, self.replaced = path, lock_fd, created, replaced

    @property
    def locked(self) -> bool:
        """Whether this process holds the directory's lock."""
        return self.lock_fd is not None

    @classmethod
    def unlocked(cls, path: Path) -> RunDirectory:
        """A handle for a process that does not write (MPI ranks other than 0)."""
        return cls(Path(path))

    @classmethod
    def fresh(cls, path: Path, overwrite: bool = False) -> RunDirectory:
        """Claim `path` for a new run: it must be missing or empty, unless `overwrite` moves its run aside."""
        path = Path(path)
        try:
            taken = path.is_dir() and not overwrite and not _is_empty(path)
        except OSError as err:
            raise _folder_error(path, err, "use") from None
        if taken:
            refuse_held(path)  # refused before taking the lock: a foreign folder gets not even a .lock file
            raise RunDirectoryTakenError(_not_empty_message(path))
        created = _make_folder(path)
        try:
            lock_fd = _acquire(path)
        except BaseException:
            if created:  # no half-claimed folder: one this claim made goes again (rmdir: only while empty)
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        directory = cls(path, lock_fd, created)
        try:
            if not _is_empty(path):
                if not overwrite:
                    raise RunDirectoryTakenError(_not_empty_message(path))
                directory._move_old_run_aside()
        except BaseException:
            directory.close()
            raise
        return directory

    @classmethod
    def next_free(cls, base: Path) -> RunDirectory:
        """A new run's own folder: `base` (runs/<name>), else `base-2`, `base-3`, ... (Lightning's version_N)."""
        for number in range(1, 100_000):
            candidate = base if number == 1 else base.with_name(f"{base.name}-{number}")
            if candidate.exists() and not (candidate.is_dir() and _is_empty(candidate)):
                continue
            try:
                return cls.fresh(candidate)
            except RunDirectoryTakenError:  # another run took it between the look and the claim: the next name
                continue
        raise SpecError(f"{base}: no free run folder name left; clean up {base.parent}")

    @classmethod
    def claimed(cls, path: Path, resuming: bool, writer: bool) -> RunDirectory:
        """The run directory of a new run (fresh) or a resumed one (existing), locked by the one process that
        writes it (`writer`: rank 0 under MPI); a path-only handle for the others."""
        if not writer:
            return cls.unlocked(path)
        return cls.existing(path) if resuming else cls.fresh(path)

    @classmethod
    def existing(cls, path: Path) -> RunDirectory:
        """Claim a run directory that holds a run, to continue it (--resume)."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such run directory; nothing to resume (train without --resume "
                                  "first)")
        return cls(path, _acquire(path, "make it writable to resume it there, or copy it to a folder you can "
                                        "write and resume the copy"))

    def begin_again(self) -> None:
        """Begin the run in this claimed folder again (it was stopped before its first checkpoint): what it holds is
        moved aside, as --overwrite moves a run, and deleted when the new run finishes."""
        self._move_old_run_aside()

    def _move_old_run_aside(self) -> None:
        """--overwrite: the old run leaves in one rename (taking our lock with it), then an empty folder of the
        same name is claimed. A crash at any point leaves the old run whole, aside or in place."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.replaced-{stamp}-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except OSError as err:
            raise _folder_error(self.path, err, "move aside the old run of") from None
        old_fd, self.lock_fd = self.lock_fd, None  # closed below whatever happens: close() must not close it again
        try:
            self.created = _make_folder(self.path)
            if not self.created and not _is_empty(self.path):
                raise RunDirectoryTakenError(f"--overwrite {self.path}: another process created the folder again while its old "
                                f"run was being moved aside; the old run is kept at {aside}")
            self.lock_fd = _acquire(self.path)
        finally:
            release(old_fd)
        self.replaced = aside

    def begin(self, spec_document: dict[str, Any], run_id: str | None = None,
              manifest: dict[str, Any] | None = None) -> str:
        """The run starts writing: spec.json, then run.json (its identity, which every checkpoint and the summary
        carry, the run it replaces, and the rest of `manifest`: see train/manifest.py). Until then a failed
        claim leaves the folder as it found it, and so does a failure to write run.json; a process killed between
        the two leaves a spec.json, from which `--resume` begins the run again. Returns the run_id (a new one
        unless given)."""
        run_id = run_id or uuid.uuid4().hex
        write_json(self.path / "spec.json", spec_document)
        try:
            write_json(self.path / MANIFEST, {"run_id": run_id, "dlcli_version": __version__,
                                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                              "replaces": str(self.replaced) if self.replaced else None,
                                              **(manifest or {})})
        except BaseException:  # a full disk (even after the rename: the folder's fsync): no run began
            for name in (MANIFEST, "spec.json"):
                (self.path / name).unlink(missing_ok=True)
            raise
        return run_id

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace run.json atomically (the process that holds the lock keeps it current)."""
        write_json(self.path / MANIFEST, manifest)

    def manifest(self) -> dict[str, Any]:
        """The manifest's values (empty for a run written before dlcli kept one)."""
        try:
            return dict(json.loads((self.path / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    def finish(self, manifest: dict[str, Any] | None = None) -> None:
        """The run is complete: run.json becomes `manifest` (the finished one), and the run it replaced
        (--overwrite) is deleted now, not before."""
        manifest = manifest if manifest is not None else self.manifest()
        replaced = _replaced_runs(manifest.get("replaces"))
        if not replaced:
            write_json(self.path / MANIFEST, manifest)
            return
        # renamed to hidden names first, so that a folder under a visible name is always a whole run
        doomed = []
        for folder in replaced:
            hidden = folder.with_name(f".{folder.name}.deleting")
            try:
                os.rename(folder, hidden)
            except OSError:
                hidden = folder
            doomed.append(hidden)
        write_json(self.path / MANIFEST, {**manifest, "replaces": None})
        for folder in doomed:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Release the lock; a folder this claim made and never wrote into is removed again."""
        if self.lock_fd is None:
            return
        try:
            if self.path.is_dir() and _is_empty(self.path):
                (self.path / LOCK).unlink(missing_ok=True)
                if self.created:
                    self.path.rmdir()
        except OSError:
            pass  # tidying only: the lock is released below whatever happens
        release(self.lock_fd)
        self.lock_fd = None


def _replaced_runs(replaces: str | None) -> list[Path]:
    """The run a finishing run replaces, and the ones that run was replacing in turn when it never finished to
    delete them itself (a run begun again after a stop, whose first start was itself an --overwrite)."""
    found: list[Path] = []
    while replaces and Path(replaces) not in found:
        found.append(Path(replaces))
        try:
            replaces = json.loads((Path(replaces) / MANIFEST).read_text()).get("replaces")
        except (OSError, ValueError, AttributeError):
            replaces = None
    return found


def claim_run_directory(requested: Path | None, default: Path, overwrite: bool, world: Any) -> RunDirectory:
    """A new run's directory, claimed by the rank that writes (rank 0) and agreed on by every rank.

    `requested` (--run-dir) must be missing or empty unless `overwrite`; without it the run gets `default`
    (runs/<name>) or the next free `default-N`, or replaces `default` when `overwrite` is given.
    """
    directory = None
    if world.rank == 0:
        if requested is not None or overwrite:
            directory = RunDirectory.fresh(requested or default, overwrite)
        else:
            directory = RunDirectory.next_free(default)
    path = Path(world.agree(str(directory.path) if directory is not None else None))
    return directory if directory is not None else RunDirectory.unlocked(path)


def _not_empty_message(path: Path) -> str:
    entries = sorted(entry.name for entry in path.iterdir()
                     if entry.name != LOCK and not is_stale_temporary(entry.name))
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    what = "a run" if any((path / name).exists() for name in ("spec.json", MANIFEST, CHECKPOINTS)) else "files"
    return (f"--run-dir {path} already holds {what} ({shown}); a new run never writes into a folder that is not "
            f"empty. Continue that run with: dlcli train {path} --resume; replace it with --overwrite (the old run "
            "is moved aside, then deleted when the new one finishes); or choose another --run-dir")


def _make_folder(path: Path) -> bool:
    """Create `path` (and its parents); True when this call created it."""
    try:
        path.mkdir(parents=True)
        return True
    except FileExistsError:
        if not path.is_dir():
            raise SpecError(f"cannot use {path} as a run directory: it is a file, not a folder; choose "
                            "another --run-dir") from None
        return False
    except OSError as err:
        raise _folder_error(path, err, "create") from None


def _acquire(path: Path, fix: str | None = None) -> int:
    """The run directory's lock (run_lock.acquire), an OSError worded as a run-directory error."""
    try:
        return acquire(path)
    except OSError as err:
        raise (_folder_error(path, err, "lock", fix) if fix else _folder_error(path, err, "lock")) from None
