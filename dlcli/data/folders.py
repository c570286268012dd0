"""Folders of examples, one subfolder a class, listed as Keras' `index_directory` lists them: class names from
the sorted subfolder names (or data.class_names), each class's files in sorted walk order, and the labels; or
labels from a CSV of path,label. The image and text folder readers share this listing."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dlcli.data.files import os_problem
from dlcli.errors import DataError, SpecError


@dataclass
class FolderListing:
    """The files of a folder of examples, in Keras' order, with each file's class id and the class names."""

    root: Path
    files: list[Path]
    labels: np.ndarray  # int64 class id of each file
    class_names: list[str]
    empty_classes: list[str]  # class folders that hold no file of the kinds read (Keras keeps them as classes)
    kind: str = "image"  # what the files are, for messages: "image" or "text"


def class_folders(root: Path) -> list[str]:
    """The class subfolders of `root`, sorted by name; hidden ones (".git", ".ipynb_checkpoints") are left out,
    as Keras leaves them out."""
    try:
        entries = list(os.scandir(root))
    except OSError as err:
        raise DataError(os_problem(root, err)) from None
    return sorted(entry.name for entry in entries if not entry.name.startswith(".") and _is_folder(entry))


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link: a class folder may be a link to a folder elsewhere
    except OSError:  # a link that loops or dangles is not a class folder
        return False


def walk_files(folder: Path, suffixes: tuple[str, ...], follow_links: bool) -> Iterator[Path]:
    """The files under `folder` whose names end (case-insensitively) with one of `suffixes`: folders in sorted
    order, each folder's files sorted by name, as Keras walks them.

    With `follow_links`, links to folders are walked too, each real folder at most once, so a link that points
    back up the tree ends there instead of looping. A link to a file is listed as a file either way; one that
    loops or dangles is listed too, for the file check to name it.
    """
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    found: list[tuple[str, list[str]]] = []
    while pending:
        current = pending.pop()
        try:
            info = current.stat()
            entries = list(os.scandir(current))
        except OSError as err:
            raise DataError(os_problem(current, err)) from None
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        names = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) or (follow_links and entry.is_symlink() and _is_folder(entry)):
                pending.append(Path(entry.path))
            elif entry.name.lower().endswith(suffixes) and not _is_folder(entry):
                names.append(entry.name)
        found.append((str(current), sorted(names)))
    for directory, names in sorted(found):  # Keras sorts the walk by folder path, then each folder's names
        for name in names:
            yield Path(directory) / name


def list_folder(root: Path, suffixes: tuple[str, ...], class_names: list[str] | None, follow_links: bool,
                kind: str) -> FolderListing:
    """Every file of `root`'s class subfolders (only the classes `class_names` lists, in its order, when given),
    labelled by its class's position; `kind` ("image", "text") names the files in messages."""
    found = class_folders(root)
    if class_names is not None:
        unknown = [name for name in class_names if name not in found]
        if unknown:
            raise SpecError(f"data.class_names: {unknown} are not subfolders of {root}; its class folders are "
                            f"{found or 'none'}")
        found = list(class_names)
    if not found:
        raise DataError(f"{root} holds no class folders: put the {kind} files of each class in a subfolder named "
                        f"after it ({root}/cats/, {root}/dogs/, ...), or give data.labels = \"labels.csv\" "
                        f"(path,label)")
    files: list[Path] = []
    labels: list[int] = []
    empty = []
    for class_id, name in enumerate(found):
        members = list(walk_files(root / name, suffixes, follow_links))
        if not members:
            empty.append(name)
        files += members
        labels += [class_id] * len(members)
    if not files:
        raise DataError(f"{root} holds no {kind} files ({', '.join(suffixes)}) in its class folders {found}")
    return FolderListing(root, files, np.array(labels, np.int64), found, empty, kind)


def list_labelled(root: Path, labels_csv: Path, class_names: list[str] | None, kind: str) -> FolderListing:
    """The files a CSV of path,label names (paths relative to `root`), in the CSV's order; labels are class names
    (sorted into ids, or in class_names' order) or class ids."""
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        detail = os_problem(labels_csv, err) if isinstance(err, OSError) else f"{labels_csv}: {err}"
        raise DataError(f"data.labels: {detail}; it must be a UTF-8 CSV with a header path,label") from None
    if not rows or [cell.strip().lower() for cell in rows[0][:2]] != ["path", "label"]:
        raise DataError(f"data.labels: {labels_csv} must start with the header line path,label (found "
                        f"{','.join(rows[0]) if rows else 'an empty file'})")
    body = rows[1:]
    short = [number for number, row in enumerate(body, start=2) if len(row) < 2 or not row[0].strip()]
    if short:
        raise DataError(f"data.labels: {labels_csv}, line {short[0]}: expected a path and a label "
                        f"({len(short):,} such lines)")
    if not body:
        raise DataError(f"data.labels: {labels_csv} lists no files")
    paths = [row[0].strip() for row in body]
    outside = [path for path in paths if os.path.isabs(path) or ".." in Path(path).parts]
    if outside:
        raise DataError(f"data.labels: {labels_csv} names {outside[0]!r}: paths must be relative to {root} and "
                        f"stay inside it")
    names = [row[1].strip() for row in body]
    _refuse_listed_twice(paths, names, labels_csv)
    ids, classes = _label_ids(names, class_names, labels_csv)
    keep = ids >= 0  # class_names chose a subset
    files = [root / path for path, kept in zip(paths, keep) if kept]
    if not files:
        raise DataError(f"data.labels: none of the {kind} files in {labels_csv} has a class in data.class_names")
    present = set(names)
    return FolderListing(root, files, ids[keep], classes, [c for c in classes if c not in present], kind)


def _refuse_listed_twice(paths: list[str], names: list[str], labels_csv: Path) -> None:
    """A file the CSV lists twice would train as two examples, with two classes if the labels differ: a DataError
    naming both lines (the header is line 1)."""
    first: dict[str, int] = {}
    for index, path in enumerate(paths):
        key = os.path.normpath(path)
        if key not in first:
            first[key] = index
            continue
        before = first[key]
        what = (f"with two labels, {names[before]!r} and {names[index]!r}" if names[before] != names[index]
                else "twice with the same label, so it would count as two examples")
        raise DataError(f"data.labels: {labels_csv}, lines {before + 2} and {index + 2}: lists {path!r} {what}; "
                        f"keep one line per file")


def _label_ids(names: list[str], class_names: list[str] | None, source: Path) -> tuple[np.ndarray, list[str]]:
    """Class ids of the CSV's labels: names sorted (or in class_names' order; other names get -1, left out), or
    whole numbers read as ids 0..K-1 and named by their digits."""
    if class_names is None and all(name.isdigit() for name in names):
        ids = np.array([int(name) for name in names], np.int64)
        return ids, [str(i) for i in range(int(ids.max()) + 1)]
    classes = list(class_names) if class_names is not None else sorted(set(names))
    if class_names is not None:
        missing = sorted(set(class_names) - set(names))
        if missing:
            raise SpecError(f"data.class_names: {missing} never occur as a label in {source}")
    position = {name: i for i, name in enumerate(classes)}
    return np.array([position.get(name, -1) for name in names], np.int64), classes


def usual_example_suffix(root: Path, suffixes: tuple[str, ...], limit: int = 10_000, sample: int = 64) -> str | None:
    """The ending (one of `suffixes`, lowercased) of the usual kind of example file in `root`: texts (".txt") or
    images (the first image ending found), whichever are more of the first `sample` such files in its subfolders,
    breadth first (hidden ones left out), or of the files at its top when its subfolders hold none (a flat
    folder); None when the first `limit` entries hold none. It tells an image folder from a text folder without
    listing a large tree. A majority of kinds (.jpg and .png count together), and the subfolders first, because
    folders of photos come with a README.txt or a LICENSE.txt beside the class folders, or captions among a
    class's images: the first file found made such a folder a text folder. Keras reads only the class folders'
    files too."""
    queue, top, below = [root], [], []
    seen = 0
    while queue and seen < limit and len(below) < sample:
        folder = queue.pop(0)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            name = entry.name.lower()
            if entry.name.startswith(".") or len(below) >= sample:
                continue
            if _is_folder(entry):
                queue.append(Path(entry.path))
            elif name.endswith(suffixes):
                (top if folder == root else below).append(next(suffix for suffix in suffixes if name.endswith(suffix)))
    found = below or top[:sample]
    texts = found.count(".txt")
    images = [suffix for suffix in found if suffix != ".txt"]
    if not found:
        return None
    if len(images) == texts:  # as many of each: the kind found first
        return found[0]
    return images[0] if len(images) > texts else ".txt"


def record_files(schema: dict[str, Any], root: Path, files: list[Path], kept: np.ndarray, labels: np.ndarray | None,
                 seconds: float | None = None) -> None:
    """Note in the run's schema what a folder read did: files checked and skipped, the check's seconds, and a
    sha256 of the files kept (paths relative to the folder, with their labels), by which a resumed run knows
    that it reads the same examples in the same order."""
    record = schema.setdefault("files", {"checked": 0, "skipped": 0, "listings": []})
    record["checked"] += len(files)
    record["skipped"] += int((~kept).sum())
    if seconds is not None:
        record["check_seconds"] = round(record.get("check_seconds", 0.0) + seconds, 3)
    digest = hashlib.sha256()
    for index in np.flatnonzero(kept):
        name = os.path.relpath(files[index], root) if os.path.isabs(files[index]) == os.path.isabs(root) else \
            str(files[index])
        digest.update(f"{name}\0{labels[index] if labels is not None else ''}\n".encode())
    record["listings"].append(digest.hexdigest())
