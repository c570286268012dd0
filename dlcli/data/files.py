"""The one gate every data path passes before it is read: any OS-level problem becomes a DataError naming it."""

from __future__ import annotations

import errno
import mmap
import os
import stat
from pathlib import Path

from dlcli.errors import DataError

# what each common errno means for a path the user gave us, and what to do about it
_OS_PROBLEMS = {
    errno.ENOENT: "does not exist; check the path",
    errno.ELOOP: "is a symbolic link that loops (it points, directly or through other links, back at itself); "
                 "point it at a real file",
    errno.ENAMETOOLONG: "is a name longer than this system allows (most allow 255 bytes a file or folder name); "
                        "rename the file or folder with a shorter name",
    errno.EACCES: "cannot be read: permission denied; check its permissions (and those of its folders)",
    errno.EPERM: "cannot be read: operation not permitted; check its permissions",
    errno.ENOTDIR: "goes through something that is not a folder (a file used as a folder); check the path",
    errno.EISDIR: "is a folder, not a file; name the data file inside it",
}


def os_problem(path: Path, err: OSError) -> str:
    """One paragraph saying what OSError `err` means for data path `path`."""
    known = _OS_PROBLEMS.get(err.errno) if err.errno is not None else None
    return f"{path} {known}" if known else f"{path} cannot be read ({err.strerror or err}); check the path and the file"


def existing_file(path: str | Path) -> Path:
    """`path` as a Path, or a DataError naming it if it is not a readable regular file (missing, a folder, a
    symlink loop, a name too long, no permission: any OSError)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode  # follows symlinks, so a loop or a dangling link fails here, by its errno
    except OSError as err:
        raise DataError(os_problem(path, err)) from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path} is a folder, not a file; check the path")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path} is not a regular file (a device, pipe or socket); save the data to a file")
    return path


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of data file `path`, any OSError as a DataError naming it."""
    path = existing_file(path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(os_problem(path, err)) from None


def whole_file(path: str | Path) -> bytes:
    """The bytes of file `path` in one read, OSError as it comes (for callers that name the file their own way).

    For many small files (an image folder's decode threads): os.open and one sized os.read are three system
    calls and three releases of the GIL, against five or more through open().read() (2 us less a 10 KB file,
    measured here)."""
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(handle).st_size
        data = os.read(handle, size + 1)  # one byte more than the size: a file that grew since is read on
        if len(data) <= size:  # a regular file's read is short only at its end (os.read retries on EINTR)
            return data
        parts = [data]
        while chunk := os.read(handle, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(handle)


def map_file_bytes(path: str | Path) -> mmap.mmap | bytes:
    """The bytes of data file `path` mapped into memory, read-only (b"" for an empty file), any OSError as a
    DataError naming it. Pages are read as they are touched, by whichever thread touches them first: a parser
    on several threads reads the file in parallel instead of after one whole-file copy (0.1 s for 183 MB)."""
    path = existing_file(path)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return b""
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as err:
        raise DataError(os_problem(path, err)) from None


def unreadable(path: Path, err: Exception, expected: str, hint: str = "") -> DataError:
    """The DataError for a failure while reading `path` as `expected` (e.g. "a readable .npz archive"): an OS
    problem (an OSError with an errno) says so; anything else means the content is damaged."""
    if isinstance(err, OSError) and err.errno is not None:
        return DataError(os_problem(path, err))
    return DataError(f"{path} is not {expected}{hint} ({err}); it may be truncated or corrupt: save or download "
                     f"it again")


def not_utf8(path: Path, raw: bytes, err: UnicodeDecodeError, advice: str) -> DataError:
    """The DataError for a text file that does not decode as UTF-8: the line and the byte where it fails, and
    `advice` (save it as UTF-8...), since a spreadsheet's export in a legacy encoding (Latin-1: "café" as 0xe9)
    is far likelier than damage; a file with NUL bytes is said to look binary instead."""
    line = raw.count(b"\n", 0, err.start) + 1
    if b"\0" in raw[:4096] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 has NULs and a BOM
        return DataError(f"{path}, line {line}: not text (NUL bytes; byte 0x{raw[err.start]:02x} is not UTF-8); "
                         f"it looks binary, truncated or corrupt: check the path, or save or download it again")
    return DataError(f"{path}, line {line}: byte 0x{raw[err.start]:02x} is not UTF-8 ({err.reason}); {advice}")
