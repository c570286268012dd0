"""Dataset files from the cache, a local mirror or their canonical URL (with pooch), always sha256-verified."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import zlib
from pathlib import Path
from typing import Iterator, Literal

import pooch

from dlcli.errors import DataError

CACHE_ENV = "DLCLI_CACHE"
MIRROR_ENV = "DLCLI_DATASETS_MIRROR"
Verify = Literal["file", "decompressed"]
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The download cache: $DLCLI_CACHE, else the platform's user cache folder for dlcli."""
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("dlcli"))


def mirror_dir() -> Path | None:
    """The local mirror named by $DLCLI_DATASETS_MIRROR, if set."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None


def local_copy(dataset: str, filename: str) -> Path | None:
    """The cached, else mirrored, copy of a dataset file if one exists (not verified: cheap, for listings)."""
    cached = cache_dir() / dataset / filename
    return cached if cached.is_file() else _mirrored(dataset, filename)


def _mirrored(dataset: str, filename: str) -> Path | None:
    """The mirror's copy of a file: <mirror>/<dataset>/<filename>, else <mirror>/<filename>."""
    mirror = mirror_dir()
    if mirror is None:
        return None
    for candidate in (mirror / dataset / filename, mirror / filename):
        if candidate.is_file():
            return candidate
    return None


def file_sha256(path: Path, decompressed: bool = False) -> str:
    """The sha256 of a file's bytes, or of its gzip-decompressed bytes."""
    digest = hashlib.sha256()
    try:
        with (gzip.open(path, "rb") if decompressed else open(path, "rb")) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a readable gzip file ({err}); it may be truncated or corrupt: delete it "
                        f"and download it again") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    return digest.hexdigest()


def fetch(dataset: str, filename: str, url: str, sha256: str, verify: Verify = "file") -> Path:
    """The verified local path of one dataset file: cached, else mirrored (read in place), else downloaded.

    `verify="decompressed"` checks the sha256 of the gzip-decompressed bytes, for files (MNIST's) whose
    compressed bytes differ from copy to copy while their content does not.
    """
    cached = cache_dir() / dataset / filename
    if cached.is_file():
        _verify(cached, sha256, verify, "it is a damaged or different copy: delete it to download it again")
        return cached
    mirrored = _mirrored(dataset, filename)
    if mirrored is not None:
        _verify(mirrored, sha256, verify,
                f"the mirror holds a damaged or different copy: replace it, or unset {MIRROR_ENV} to download "
                f"{url}")
        return mirrored
    path = _download(dataset, filename, url, sha256 if verify == "file" else None)
    if verify == "decompressed":
        try:
            _verify(path, sha256, verify, f"the server sent other data (deleted). {_offline_hint(dataset, filename)}")
        except DataError:
            path.unlink(missing_ok=True)
            raise
    return path


def _verify(path: Path, expected: str, verify: Verify, fix: str) -> None:
    """DataError naming both hashes unless the file (or its decompressed bytes) has sha256 `expected`."""
    found = file_sha256(path, decompressed=verify == "decompressed")
    if found != expected.lower():
        what = "its decompressed bytes" if verify == "decompressed" else "the file"
        raise DataError(f"{path} fails its checksum: expected sha256 {expected} of {what}, found {found}; {fix}")


def _download(dataset: str, filename: str, url: str, sha256: str | None) -> Path:
    """Download `url` into the cache with pooch (which checks `sha256` when given) and return its path."""
    try:
        with _quiet(pooch.get_logger()):
            found = pooch.retrieve(url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=filename,
                                   path=cache_dir() / dataset, progressbar=False)
    except OSError as err:  # requests' errors (no network, refused, HTTP status) are OSErrors, as are disk errors
        raise DataError(f"cannot download {filename} (dataset {dataset!r}) from {url}: {err}. "
                        f"{_offline_hint(dataset, filename)}") from None
    except ValueError as err:  # pooch's checksum mismatch, or a URL scheme it does not know
        raise DataError(f"downloading {filename} (dataset {dataset!r}) from {url} failed: {err} "
                        f"{_offline_hint(dataset, filename)}") from None
    return Path(found)


def _offline_hint(dataset: str, filename: str) -> str:
    """How to provide a file without the network."""
    mirror = mirror_dir()
    state = f" (now {mirror}, which holds no {filename})" if mirror else ""
    return (f"To work offline, put {filename} in {cache_dir() / dataset}/ (the cache, set by {CACHE_ENV}), or point "
            f"{MIRROR_ENV}{state} at a folder holding {dataset}/{filename} or {filename}.")


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Silence pooch's progress messages: progress on the terminal is the report layer's job."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
