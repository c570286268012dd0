"""What the image and text folder readers share: their [data] keys, the listing of a folder of examples by class
(subfolders, or a CSV of path,label), and each file's class id counted as training counted the classes."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.folders import FolderListing, list_folder, list_labelled
from dlcli.data.images import IMAGE_SUFFIXES
from dlcli.data.readers.reader import Reader
from dlcli.data.readers.request import DataKeys, ReadRequest
from dlcli.errors import DataError

FOLDER_KEYS = frozenset({"class_names", "labels", "follow_links", "on_bad_file", "decode_threads"})
EXAMPLE_SUFFIXES = (*IMAGE_SUFFIXES, ".txt")  # what tells an image folder from a text folder


def folder_listing(path: Path, data: DataKeys, kind: str) -> FolderListing:
    """The files of a folder of examples ("image" or "text" files), with their classes: from the class
    subfolders, or from the CSV that data.labels names."""
    suffixes = IMAGE_SUFFIXES if kind == "image" else (".txt",)
    if isinstance(data.labels, Path):
        return list_labelled(path, data.labels, data.class_names, kind)
    return list_folder(path, suffixes, data.class_names, data.follow_links, kind)


def class_ids(request: ReadRequest, output: str, listing: FolderListing) -> np.ndarray:
    """The class id of every listed file: its class's position among the classes training learned (the training
    folder's own, stored in the schema, so that a validation or test folder counts its classes the same way)."""
    try:
        classes = request.classes(output, listing.class_names, str(listing.root))
    except DataError as err:
        if not listing.empty_classes:
            raise
        empty = ", ".join(repr(name) for name in listing.empty_classes)
        raise DataError(f"{err} (class folder {empty} holds no {listing.kind} files: remove it, or list the classes "
                        f"in data.class_names)") from None
    if classes == listing.class_names:
        return listing.labels
    position = {name: index for index, name in enumerate(classes)}
    unknown = [name for name in listing.class_names if name not in position and name not in listing.empty_classes]
    if unknown:
        raise DataError(f"{listing.root}: class {unknown[0]!r} was not among the training data's classes "
                        f"{classes}; remove it, or list the classes to read in data.class_names")
    remap = np.array([position.get(name, -1) for name in listing.class_names], np.int64)
    return remap[listing.labels]


def describe_folder(reader: Reader, path: Path, request: ReadRequest) -> dict[str, Any]:
    """What a folder reader tells the data report (Reader.describe): the folder read as training reads it (every
    file checked), then what its lazy array says (an image folder's sizes, modes and formats from the files'
    headers; a text folder's lengths), with the files checked and skipped and the check's seconds. The caller's
    schema is left as it was."""
    schema = copy.deepcopy(request.schema)
    schema.pop("files", None)  # training's read already counted its files there: count this read's alone
    request = replace(request, schema=schema)
    examples = reader.read(path, request)
    report: dict[str, Any] = next(iter(examples.inputs.values())).describe()
    record = request.schema.get("files")
    if record is not None:
        report["files_checked"], report["skipped_files"] = record["checked"], record["skipped"]
        if "check_seconds" in record:
            report["check_seconds"] = record["check_seconds"]
    return report
