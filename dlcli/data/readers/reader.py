"""The reader interface and its one dispatcher: every data file a run reads (train, validation and test splits,
eval --data, predict's input) goes to the reader registered for what it is.

A reader is a Reader subclass in a file of its own (npz.py is one), registered once under its name with
`@registry.readers.register("npz")`; its docstring's first line is what the "unsupported" message lists, and
data/readers/__init__.py imports its file. It declares what it accepts: file suffixes, or `directory = True`
for a folder (of images or of text files, one subfolder a class); a reader that must look inside to tell
overrides `accepts`. A reader with options of its own (an image folder's image_size) registers a pydantic model
of them as its spec, `register("image_folder", spec=ImageFolderOptions)`: the dispatcher validates
[data.options] against it and hands the result to the reader as request.options (for readers without one,
[data.options] stays the registry datasets' table).

A reader may instead claim a request by the spec's keys, whatever the file's name (`claims`): the time-series
reader takes every file of a spec with [data.timeseries], and reads the table through the reader of its suffix.

`read` returns arrays, or lazy array-likes (`__len__`, `shape`, `dtype`, `ndim`, and `__getitem__` with an
index array, a slice or an integer returning a NumPy array): the time-series reader's windows are views over
the table (data/windows.py), gathered a batch at a time, so that memory stays O(rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from dlcli import registry
from dlcli.data.readers.request import ReadRequest
from dlcli.errors import DataError, SpecError


@dataclass
class Examples:
    """What a reader read: an array for each model input and each output's targets (none when inputs only were
    asked for), first axis examples, and where each example is in the file."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    lines: np.ndarray | None = None  # a text file's line of each example (header = line 1); None: rows from 0
    weights: np.ndarray | None = None  # data.sample_weight: each example's (or step's) weight, float32


class Reader:
    """Base of the registered readers: what paths a reader accepts, and its read."""

    suffixes: ClassVar[tuple[str, ...]] = ()  # file name endings, such as ".csv" or ".csv.gz"
    directory: ClassVar[bool] = False  # a folder (one subfolder a class, say), not a file

    @classmethod
    def accepts(cls, path: Path) -> bool:
        """Whether this reader takes `path`: by its name's ending, or (a folder reader) because it is a folder."""
        if any(path.name.endswith(suffix) and path.name != suffix for suffix in cls.suffixes):
            return True
        return cls.directory and path.is_dir()

    @classmethod
    def claims(cls, request: ReadRequest) -> bool:
        """Whether this reader reads every file of `request`, by the spec's keys rather than the file's name."""
        return False

    @classmethod
    def described(cls) -> str:
        """What the reader accepts, for messages: ".csv or .csv.gz", "a folder"."""
        kinds = [*cls.suffixes, *(["a folder"] if cls.directory else [])]
        return " or ".join(kinds)

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """The examples in `path` that `request` asks for, every array checked as it comes (before any shuffle,
        so that a problem names the file's line or the array's row)."""
        raise NotImplementedError

    def describe(self, path: Path, request: ReadRequest) -> dict[str, Any]:
        """What this kind of file can tell about itself for `dlcli validate --data-report` (JSON-able): a
        table's missing and constant columns, an image folder's sizes and modes, a text folder's lengths. The
        report's split statistics (counts, class balance, duplicates) come from the arrays, for every reader."""
        return {}


def reader_for(path: Path, readers: registry.Registry = registry.readers) -> registry.Entry:
    """The registry entry of the reader that accepts `path`; DataError listing what the readers accept when none
    does. Suffixes are tried before folders, so a folder named like a file reaches that file's reader (which says
    it is a folder)."""
    entries = list(readers)
    for entry in sorted(entries, key=lambda e: e.target.directory):
        if entry.target.accepts(path):
            return entry
    raise DataError(unsupported_message(path, entries))


def unsupported_message(path: Path, entries: list[registry.Entry]) -> str:
    """The one "unsupported data" message: what each registered reader accepts, with its one-line doc."""
    known = "; ".join(f"{entry.target.described()} ({_lowered(entry.doc)})" for entry in entries
                      if entry.target.described())  # a reader that only claims requests accepts no name
    return f"{path}: unsupported data file; dlcli reads {known}: save the data as one of these, named by its kind"


def read_examples(path: Path, request: ReadRequest, readers: registry.Registry = registry.readers) -> Examples:
    """The examples `request` asks for from `path`, by the reader that claims the request, else the reader
    registered for what the path is."""
    entry = next((entry for entry in readers if entry.target.claims(request)), None) or reader_for(path, readers)
    if entry.spec is not None:
        request.options = _reader_options(entry, request.data.options, path)
    return entry.target().read(path, request)


def describe_file(path: Path, request: ReadRequest, readers: registry.Registry = registry.readers) -> dict[str, Any]:
    """What the reader that reads `path` for `request` tells about it (Reader.describe), with the reader's name."""
    entry = next((entry for entry in readers if entry.target.claims(request)), None) or reader_for(path, readers)
    if entry.spec is not None:
        request.options = _reader_options(entry, request.data.options, path)
    return {"reader": entry.name, **entry.target().describe(path, request)}


def _reader_options(entry: registry.Entry, options: dict, path: Path) -> object:
    """[data.options] validated against the reader's options model; SpecError naming the first bad key."""
    try:
        return entry.spec.model_validate(options)
    except ValidationError as err:
        problem = err.errors()[0]
        key = ".".join(map(str, problem["loc"]))
        takes = ", ".join(entry.spec.model_fields) or "none"
        raise SpecError(f"data.options.{key}: {problem['msg']} (the {entry.name} reader of {path} takes these "
                        f"options: {takes})") from None


def _lowered(doc: str) -> str:
    """A one-line doc as a parenthesis: final period dropped, first letter lowered unless it starts an acronym."""
    doc = doc.removesuffix(".")
    return doc if doc[1:2].isupper() else doc[:1].lower() + doc[1:]
