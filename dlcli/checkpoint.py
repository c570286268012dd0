"""Checkpoint files: named NumPy arrays plus JSON metadata in the safetensors format, never pickle.

A checkpoint is a plain safetensors file (8-byte little-endian header length, JSON header, raw
little-endian bytes) that any safetensors reader can open. Its "__metadata__" holds three strings:
"dlcli_format" (the format version), "dlcli" (the caller's metadata as JSON) and "dlcli_sha256" (a
checksum over every tensor's name, dtype, shape and bytes and over that JSON), so a flipped bit
anywhere in the file is an error on load instead of a silently different model.

The file is parsed by the safetensors library, whose Rust core rejects a short or oversized header,
invalid JSON, unknown dtypes, and offsets that overlap, leave gaps, or run past the file; its errors become
CheckpointErrors naming the file. On top of it dlcli refuses what the library lets through: duplicate
tensor names (the library keeps the last), entries with extra fields, dtypes NumPy cannot hold, missing or
foreign dlcli metadata, and a checksum mismatch.

Writes are atomic: a temporary file next to the target, fsynced, renamed over it, and the folder
fsynced, so a crash leaves either the old checkpoint or the new one, never half of one. Inside
`folder_syncs_deferred()` (an epoch's files) each folder is fsynced once at the end instead of after each
rename: the file's own fsync before its rename is what makes it whole; the folder's only makes the rename
durable, and one per folder does that for the group.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as _safetensors_arrays
from safetensors.numpy import save as _safetensors_bytes

from dlcli.errors import CheckpointError, DlcliError

FORMAT_VERSION = "1"
METADATA_KEY = "dlcli"
FORMAT_KEY = "dlcli_format"
CHECKSUM_KEY = "dlcli_sha256"
# the safetensors library refuses a header longer than this (a real one is a few hundred bytes per tensor)
MAX_HEADER_BYTES = 100_000_000
# safetensors dtype codes NumPy can hold; always little-endian, as the format requires
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "U8": np.dtype("uint8"), "I8": np.dtype("int8"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    """Write arrays and JSON-able metadata to path atomically, replacing any file already there."""
    prepared = {name: _prepare(name, value) for name, value in arrays.items()}
    # NaN and infinity stay allowed: a history with a diverged val_loss must still save and load back
    metadata_json = json.dumps(metadata)
    header_metadata = {
        FORMAT_KEY: FORMAT_VERSION,
        METADATA_KEY: metadata_json,
        CHECKSUM_KEY: _checksum(((name, _CODES[a.dtype], a.shape, a.tobytes()) for name, a in
                                 sorted(prepared.items())), metadata_json),
    }
    write_atomically(path, _safetensors_bytes(prepared, metadata=header_metadata))


def load_checkpoint(path: Path, content: bytes | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a checkpoint: its arrays by name and the metadata it was saved with.

    With `content`, parse those bytes (a checkpoint another process read and sent) and name them `path`.
    """
    path = Path(path)
    arrays, header = _parse(path, content)
    header_metadata = header.pop("__metadata__", None) or {}
    metadata, expected = _dlcli_metadata(path, header_metadata)
    pieces = ((name, header[name]["dtype"], arrays[name].shape, arrays[name].tobytes()) for name in sorted(arrays))
    if _checksum(pieces, header_metadata[METADATA_KEY]) != expected:
        raise CheckpointError(f"cannot load checkpoint {path}: the file is corrupt: its checksum does not match; "
                              "restore it from a backup or retrain (the other checkpoint of the run, "
                              "best or last, may still be intact)")
    return arrays, metadata


def _prepare(name: str, value: np.ndarray) -> np.ndarray:
    """value as a C-contiguous little-endian array of a dtype safetensors can store."""
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise ValueError(f"checkpoint array names must be non-empty strings other than '__metadata__', got {name!r}")
    if not isinstance(value, np.ndarray):
        raise TypeError(f"checkpoint array {name!r} must be a numpy array, got {type(value).__name__}")
    dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
    if dtype not in _CODES:
        raise TypeError(f"checkpoint array {name!r} has dtype {value.dtype}, which safetensors cannot store; "
                        f"use one of {', '.join(d.name for d in DTYPES.values())}")
    return np.asarray(value, dtype=dtype, order="C")  # not ascontiguousarray: it turns 0-d into 1-d


def _checksum(pieces: Any, metadata_json: str) -> str:
    """sha256 over (name, dtype code, shape, bytes) of each array in name order, then the metadata JSON."""
    digest = hashlib.sha256()

    def feed(data: bytes) -> None:
        # length-prefixed, so moving bytes from one field to the next changes the digest
        digest.update(struct.pack("<Q", len(data)))
        digest.update(data)

    for name, code, shape, data in pieces:
        feed(name.encode())
        feed(code.encode())
        feed(json.dumps([int(n) for n in shape]).encode())
        feed(data)
    feed(metadata_json.encode())
    return digest.hexdigest()


# A test seam (tests/train/faults.py sets it): called with the temporary file's path once half of the data is
# written, so a test can hold a write there and kill the process mid-file. Always None outside the tests.
half_written_hook: Callable[[Path], None] | None = None
# per thread, the folders whose renames wait for one fsync at the end of the innermost folder_syncs_deferred()
_deferring = threading.local()


def _deferred_folders() -> list[set[Path]]:
    if not hasattr(_deferring, "groups"):
        _deferring.groups = []
    return _deferring.groups


@contextlib.contextmanager
def folder_syncs_deferred() -> Iterator[None]:
    """Within: a rename's folder fsync waits until the end, once per folder (an epoch writes up to six files into
    two folders, and each fsync costs milliseconds: most of a small model's epoch)."""
    folders: set[Path] = set()
    _deferred_folders().append(folders)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _deferred_folders().pop()
        for folder in sorted(folders):
            if failed:  # the error in flight is the one to report
                with contextlib.suppress(OSError):
                    _fsync_directory(folder)
            else:
                sync_folder(folder)


def sync_folder(folder: Path, error: type[DlcliError] = CheckpointError) -> None:
    """fsync a folder after renames into it (or note it for the group's end inside folder_syncs_deferred())."""
    if groups := _deferred_folders():
        groups[-1].add(folder)
        return
    try:
        _fsync_directory(folder)
    except OSError as err:
        raise error(f"cannot write {folder}: {err.strerror or err}; check that the folder exists, is writable and "
                    "has free space") from err


def write_atomically(path: Path, data: bytes, error: type[DlcliError] = CheckpointError) -> None:
    """Replace path with data so that a crash at any point leaves the old file or the new one.

    Any run file may use it (summary.json, history); a failure is a CheckpointError naming path, or `error`: a
    command's result file (predict --output, an export) that cannot be written is a usage error, a SpecError.
    """
    path = Path(path)
    # a dot name with our pid: hidden, recognizably ours, and two processes never share one
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    created = replaced = False
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        created = True
        try:
            view = memoryview(data)
            if half_written_hook is not None:
                _write_all(fd, view[:len(view) // 2])
                half_written_hook(temp)
                view = view[len(view) // 2:]
            _write_all(fd, view)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        replaced = True
    except OSError as err:
        raise error(f"cannot write {path}: {err.strerror or err}; check that the folder exists, is writable and "
                    "has free space") from err
    finally:
        if created and not replaced:
            # the folder that failed the write may refuse this too (EROFS, EIO): the error above is the one to
            # report, and a temp file left behind is removed with the next run's stale temporaries
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
    sync_folder(path.parent, error)


def _write_all(fd: int, view: memoryview) -> None:
    while view:  # os.write may write less than asked (a full disk, a signal)
        view = view[os.write(fd, view):]


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable; without this a power cut can undo it."""
    if os.name != "posix":  # Windows cannot open a folder as a file; its rename is durable enough
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        # some filesystems (network, FUSE) cannot fsync a folder; the file itself is already synced
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _parse(path: Path, content: bytes | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the header (as JSON) of a safetensors file or its bytes, read by the safetensors library."""
    try:
        if content is None:
            _check_is_file(path)
            with safe_open(str(path), framework="numpy") as file:
                arrays = {name: file.get_tensor(name) for name in file.keys()}
            with path.open("rb") as raw:  # the library has checked that the length and the header are there
                header_json = raw.read(struct.unpack("<Q", raw.read(8))[0])
        else:
            arrays = _safetensors_arrays(content)
            header_json = content[8:8 + struct.unpack("<Q", content[:8])[0]]
    except SafetensorError as err:
        size = len(content) if content is not None else path.stat().st_size
        raise _corrupt(path, _library_problem(str(err), size)) from None
    except (TypeError, KeyError) as err:  # a dtype the library knows and NumPy does not (BF16, F8_*)
        raise _corrupt(path, f"it holds a tensor of a dtype NumPy cannot hold ({err})") from None
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from err
    try:  # the library keeps the last of two equal names, so a duplicate would hide a tensor
        header = json.loads(header_json, object_pairs_hook=_reject_duplicates)
    except ValueError as err:
        raise _corrupt(path, f"its header has {err}") from None
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if set(entry) != _ENTRY_KEYS:  # the library ignores fields it does not know; dlcli writes none
            raise _corrupt(path, f"tensor {name!r} in its header is not an object with exactly dtype, shape and "
                                 "data_offsets")
        if entry["dtype"] not in DTYPES:  # complex64 and the like: the library reads them, dlcli never writes them
            raise _corrupt(path, f"tensor {name!r} has unknown dtype {entry['dtype']!r}; known: {', '.join(DTYPES)}")
    return arrays, header


def _library_problem(message: str, size: int) -> str:
    """The safetensors library's error, said the way a user can act on it."""
    problem = message.split(": ", 1)[-1]  # after "Error while deserializing header"
    known = {
        "header too small": f"it is truncated: {size} bytes, shorter than the 8-byte header length",
        "header too large": f"its header length says more than the {MAX_HEADER_BYTES} bytes any real header needs",
        "invalid header length": "its header length says more bytes than the file holds (a truncated file?)",
        "incomplete metadata, file not fully covered": "its tensors do not cover the bytes after its header "
                                                       "exactly (a truncated file, or one with bytes added?)",
    }
    if problem in known:
        return known[problem]
    if problem.startswith(("invalid JSON in header: expected", "invalid JSON in header: trailing",
                           "invalid JSON in header: EOF", "invalid UTF-8")):
        return f"its header is not valid JSON ({problem})"
    return f"the safetensors library refuses it: {problem}"


def _check_is_file(path: Path) -> None:
    """A CheckpointError unless path is an existing file."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or train first "
                              "(a run keeps its checkpoints under runs/<name>/checkpoints/)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; give a .safetensors file or a run directory")


def _corrupt(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"cannot load checkpoint {path}: {problem}; the file is damaged or not a dlcli "
                           "checkpoint (restore it, or use the run's other checkpoint, best or last)")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def _dlcli_metadata(path: Path, header_metadata: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The caller's metadata and the stored checksum, after checking the format version."""
    if METADATA_KEY not in header_metadata or FORMAT_KEY not in header_metadata or \
            CHECKSUM_KEY not in header_metadata:
        raise CheckpointError(f"cannot load checkpoint {path}: it is a safetensors file without dlcli metadata "
                              f"(keys {METADATA_KEY!r}, {FORMAT_KEY!r}, {CHECKSUM_KEY!r}), so it was not written "
                              "by dlcli; load a checkpoint from a dlcli run directory")
    version = header_metadata[FORMAT_KEY]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"cannot load checkpoint {path}: it has checkpoint format version {version!r}, "
                              f"this dlcli reads version {FORMAT_VERSION!r}; use the dlcli version that wrote it")
    try:
        metadata = json.loads(header_metadata[METADATA_KEY])
    except ValueError as err:
        raise _corrupt(path, f"its dlcli metadata is not valid JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise _corrupt(path, f"its dlcli metadata is a JSON {type(metadata).__name__}, expected an object")
    return metadata, header_metadata[CHECKSUM_KEY]
