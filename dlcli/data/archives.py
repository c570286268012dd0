"""Archives unpacked safely into the dataset cache: every member checked before anything is written, nothing
lands outside the destination, links and devices are refused, and a half-unpacked tree is never taken for a
whole one."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from dlcli.errors import DataError

_DONE = ".complete"  # written last inside an unpacked tree: without it the tree is a torn one, unpacked again


def unpacked(archive: Path, destination: Path) -> Path:
    """`destination` holding the contents of tar archive `archive` (.tar, .tar.gz, ...), unpacked once.

    The archive is unpacked into a temporary folder beside `destination` and renamed into place when complete,
    so an interrupted run leaves no half tree under the final name. A member that is a link, a device or a
    pipe, or whose name is absolute or climbs out with "..", is a DataError naming it, and nothing is kept.
    """
    if (destination / _DONE).is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.parent / f".{destination.name}.unpacking-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _refuse_unsafe(member, archive)
            temporary.mkdir()
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+: the standard library checks once more
                tar.extractall(temporary, members=members, filter="data")
            else:  # pragma: no cover - older Pythons: the checks above are the whole defence
                tar.extractall(temporary, members=members)
        (temporary / _DONE).write_text("")
        shutil.rmtree(destination, ignore_errors=True)  # a torn tree from an older, killed run
        os.replace(temporary, destination)
    except (tarfile.TarError, EOFError, OSError) as err:
        shutil.rmtree(temporary, ignore_errors=True)
        raise DataError(f"{archive} cannot be unpacked ({err}); it may be truncated or corrupt: delete it and "
                        f"download it again") from None
    except DataError:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return destination


def _refuse_unsafe(member: tarfile.TarInfo, archive: Path) -> None:
    """DataError unless `member` is a plain file or folder whose name stays inside the destination."""
    name = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        raise DataError(f"{archive}: member {member.name!r} is a link (to {member.linkname!r}); dlcli unpacks no "
                        f"links, which could point outside the cache. The archive is not the expected one: delete "
                        f"it and download it again")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: member {member.name!r} is a device, pipe or other special file; dlcli unpacks "
                        f"plain files and folders only. The archive is not the expected one: delete it and download "
                        f"it again")
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise DataError(f"{archive}: member {member.name!r} would be written outside the folder it is unpacked "
                        f"into; dlcli refuses such archives. Delete it and download it again")
