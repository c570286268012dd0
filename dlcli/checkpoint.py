"""Checkpoint files: named NumPy arrays plus JSON metadata in the safetensors format, never pickle.

A checkpoint is a plain safetensors file (8-byte little-endian header length, JSON header, raw
little-endian bytes) that any safetensors reader can open. Its "__metadata__" holds three strings:
"dlcli_format" (the format version), "dlcli" (the caller's metadata as JSON) and "dlcli_sha256" (a
checksum over every tensor's name, dtype, shape and bytes and over that JSON), so a flipped bit
anywhere in the file is an error on load instead of a silently different model.

Writes are atomic: a temporary file next to the target, fsynced, renamed over it, and the folder
fsynced, so a crash leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
from safetensors.numpy import save as _safetensors_bytes

from dlcli.errors import CheckpointError

FORMAT_VERSION = "1"
METADATA_KEY = "dlcli"
FORMAT_KEY = "dlcli_format"
CHECKSUM_KEY = "dlcli_sha256"
# a real header is a few hundred bytes per tensor; anything this large is garbage, not a header
MAX_HEADER_BYTES = 100 * 1024 * 1024
# safetensors dtype codes NumPy can hold; always little-endian, as the format requires
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "U8": np.dtype("uint8"), "I8": np.dtype("int8"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}
# each tensor in a header, by name: (dtype code, shape, begin, end), offsets relative to the payload
Tensors = dict[str, tuple[str, tuple[int, ...], int, int]]


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
    with (io.BytesIO(content) if content is not None else _open(path)) as file:
        _, payload_start, tensors, header_metadata = _read_header(path, file)
        metadata, expected = _dlcli_metadata(path, header_metadata)
        arrays = {name: _read_array(path, file, payload_start, code, shape, begin, end)
                  for name, (code, shape, begin, end) in tensors.items()}
    pieces = ((name, tensors[name][0], arrays[name].shape, arrays[name].tobytes()) for name in sorted(arrays))
    if _checksum(pieces, header_metadata[METADATA_KEY]) != expected:
        raise CheckpointError(f"cannot load checkpoint {path}: the file is corrupt: its checksum does not match; "
                              "restore it from a backup or retrain (the other checkpoint of the run, "
                              "best or last, may still be intact)")
    return arrays, metadata


def checkpoint_info(path: Path) -> dict[str, Any]:
    """What a checkpoint holds, from its header alone: metadata, array dtypes and shapes, file size.

    Cheap even for large files, and the header's structure is checked, but the checksum is not: only
    `load_checkpoint` reads (and so verifies) the array bytes.
    """
    path = Path(path)
    with _open(path) as file:
        size, _, tensors, header_metadata = _read_header(path, file)
        metadata, _ = _dlcli_metadata(path, header_metadata)
    return {
        "metadata": metadata,
        "arrays": {name: {"dtype": DTYPES[code].name, "shape": list(shape)}
                   for name, (code, shape, _, _) in sorted(tensors.items())},
        "bytes": size,
    }


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


def write_atomically(path: Path, data: bytes) -> None:
    """Replace path with data so that a crash at any point leaves the old file or the new one.

    Any run file may use it (summary.json, history); a failure is a CheckpointError naming path.
    """
    path = Path(path)
    # a dot name with our pid: hidden, recognizably ours, and two processes never share one
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    replaced = False
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
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
        _fsync_directory(path.parent)
    except OSError as err:
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}; check that the folder "
                              "exists, is writable and has free space") from err
    finally:
        if not replaced:
            temp.unlink(missing_ok=True)


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


def _open(path: Path) -> BinaryIO:
    """path opened for reading, or a CheckpointError saying why it cannot be."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or train first "
                              "(a run keeps its checkpoints under runs/<name>/checkpoints/)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; give a .safetensors file or a run directory")
    try:
        return path.open("rb")
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from err


def _corrupt(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"cannot load checkpoint {path}: {problem}; the file is damaged or not a dlcli "
                           "checkpoint (restore it, or use the run's other checkpoint, best or last)")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def _read_header(path: Path, file: BinaryIO) -> tuple[int, int, Tensors, dict[str, str]]:
    """File size, payload start, each tensor's (dtype code, shape, begin, end) and the header metadata, checked."""
    file_size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if file_size < 8:
        raise _corrupt(path, f"it is truncated: {file_size} bytes, shorter than the 8-byte header length")
    (header_size,) = struct.unpack("<Q", file.read(8))
    if header_size > MAX_HEADER_BYTES:
        raise _corrupt(path, f"its header length says {header_size} bytes, more than the {MAX_HEADER_BYTES} "
                             "any real header needs")
    if header_size > file_size - 8:
        raise _corrupt(path, f"its header length says {header_size} bytes but only {file_size - 8} follow "
                             "(a truncated file?)")
    raw = file.read(header_size)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise _corrupt(path, f"its header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, f"its header is a JSON {type(header).__name__}, expected an object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _corrupt(path, "its header's __metadata__ is not an object of strings")
    payload_size = file_size - 8 - header_size
    tensors = {name: _tensor_entry(path, name, entry, payload_size) for name, entry in header.items()}
    _check_coverage(path, tensors, payload_size)
    return file_size, 8 + header_size, tensors, metadata


def _tensor_entry(path: Path, name: str, entry: Any, payload_size: int) -> tuple[str, tuple[int, ...], int, int]:
    """One header entry as (dtype code, shape, begin, end), checked against the payload size."""
    where = f"tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _corrupt(path, f"{where} in its header is not an object with exactly dtype, shape and data_offsets")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in DTYPES:
        raise _corrupt(path, f"{where} has unknown dtype {code!r}; known: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise _corrupt(path, f"{where} has shape {shape!r}, expected a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)):
        raise _corrupt(path, f"{where} has data_offsets {offsets!r}, expected [begin, end]")
    begin, end = offsets
    if not begin <= end <= payload_size:
        raise _corrupt(path, f"{where} has data_offsets [{begin}, {end}] outside the {payload_size}-byte payload "
                             "(a truncated file?)")
    expected = math.prod(shape) * DTYPES[code].itemsize
    if end - begin != expected:
        raise _corrupt(path, f"{where} has shape {shape} of {code}, which needs {expected} bytes, but its "
                             f"data_offsets span {end - begin}")
    return code, tuple(shape), begin, end


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_coverage(path: Path, tensors: Tensors, payload_size: int) -> None:
    """The tensors' byte ranges tile the payload exactly: no overlap, no gap, nothing left over."""
    position, previous = 0, None
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda item: item[1][2:]):
        if begin < position:
            raise _corrupt(path, f"tensor {name!r} overlaps tensor {previous!r} in the payload")
        if begin > position:
            raise _corrupt(path, f"bytes {position} to {begin} of the payload belong to no tensor")
        position, previous = end, name
    if position != payload_size:
        raise _corrupt(path, f"the tensors cover {position} bytes but the payload has {payload_size}")


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


def _read_array(path: Path, file: BinaryIO, payload_start: int, code: str, shape: tuple[int, ...],
                begin: int, end: int) -> np.ndarray:
    """One tensor read straight into a fresh (so aligned and writable) array."""
    array = np.empty(shape, DTYPES[code])
    file.seek(payload_start + begin)
    target = array.reshape(-1).view(np.uint8)
    if file.readinto(memoryview(target)) != end - begin:
        raise _corrupt(path, "it ended while reading tensor data (was it truncated while being read?)")
    return array
