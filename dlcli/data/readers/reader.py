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

`read` returns arrays whose first axis is examples: NumPy arrays, or LAZY arrays for data that does not fit in
memory or is cheaper made a batch at a time (an image folder's decoded images, time-series windows over a table).
A lazy array is an object with
  - `shape` (examples first), `dtype`, `ndim` and `__len__`, and
  - `__getitem__(index) -> np.ndarray`: the rows at an index array (also a slice, a boolean mask or one int),
    returned as a NumPy array; the same index must always give the same rows, bit for bit.
Optionally, it also has
  - `select(index)`: the rows at `index` as another lazy array (validation_split holds a part out without
    reading it; without select, `array[index]` is taken, a NumPy array);
  - `fill(index, out)` and `threads`: write the rows at `index` into `out`, safe to call from several threads at
    once on different rows; training then gathers each batch with data.prefetch.prefetched(), on a pool of
    `threads` threads, a few batches ahead of the step (a lazy array without them is just indexed, in the
    training thread, when its batch comes);
  - `describe() -> dict`: what the data report says about it (image sizes and modes, text lengths); the folder
    readers' `describe(path, request)` (the data report's per-file hook, `dlcli validate --data-report`) reads
    the folder as training does and returns it, with the files checked and skipped;
  - `nonfinite_rows() -> np.ndarray`: which examples hold NaN or infinity (bool, one per example), for predict
    to refuse or mark them (time-series windows, which predict reads unchecked); without it, none do.
Training never reads a lazy array whole: batches, evaluation, predictions and normalization's adapt all go a
batch at a time. The training loop asks for each rank's own shard of a batch only (under MPI).

A reader's own keys of [data] (an image folder's image_size, ...) are named in its `data_keys`; a training split
read by another reader with one of them set to other than its default is a SpecError naming the key, so a key
that would do nothing is never silently ignored.

A reader may instead claim a request by the spec's keys, whatever the file's name (`claims`): the time-series
reader takes every file of a spec with [data.timeseries], and reads the table through the reader of its suffix.

The time-series reader's windows (data/windows.py) are lazy arrays without `fill`: views over the table,
gathered a batch at a time, so that memory stays O(rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError

from dlcli import registry
from dlcli.data.files import os_problem
from dlcli.data.readers.request import ReadRequest
from dlcli.errors import DataError, SpecError


@dataclass
class Examples:
    """What a reader read: an array for each model input and each output's targets (none when inputs only were
    asked for), first axis examples, and where each example is in the file."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    lines: np.ndarray | None = None  # a text file's line of each example (header = line 1); None: rows from 0
    sources: list[str] | None = None  # the file of each example, for readers of one example a file (folders)
    # where each example is, as columns that predict writes before its predictions (a time-series window's row
    # and target_row); the file of each example (sources) is written first, as a path column
    positions: dict[str, np.ndarray] = field(default_factory=dict)
    weights: np.ndarray | None = None  # data.sample_weight: each example's (or step's) weight, float32


class Reader:
    """Base of the registered readers: what paths a reader accepts, and its read."""

    suffixes: ClassVar[tuple[str, ...]] = ()  # file name endings, such as ".csv" or ".csv.gz"
    directory: ClassVar[bool] = False  # a folder (one subfolder a class, say), not a file
    data_keys: ClassVar[frozenset[str]] = frozenset()  # the keys of [data] only this kind of reader uses

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
    if "." not in path.name and not os.path.lexists(path):  # most likely a folder, mistyped or not made yet
        raise DataError(f"{path} does not exist; check the path (a folder of images or texts, one subfolder a "
                        f"class, or a data file)")
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
    try:  # a missing file says so (exit 3) before any question about what it should hold (data.target, ...)
        os.stat(path)
    except OSError as err:
        raise DataError(os_problem(path, err)) from None
    if request.targets is not None:
        refuse_keys_of_other_readers(entry, request.data,
                                     f"{path} is read by the {entry.name} reader ({_lowered(entry.doc)})", readers)
    if entry.spec is not None:
        request.options = _reader_options(entry, request.data.options, path)
    return entry.target().read(path, request)


def refuse_keys_of_other_readers(entry: registry.Entry | None, data: object, what: str,
                                 readers: registry.Registry = registry.readers) -> None:
    """SpecError for a [data] key of another kind of reader than `entry` (None: a registry dataset, which no
    reader reads) set to other than its default: it would do nothing. `what` says what is read, for the message."""
    fields = getattr(type(data), "model_fields", {})
    own = entry.target.data_keys if entry is not None else frozenset()
    others = {key for other in readers for key in other.target.data_keys} - own
    unused = sorted(key for key in others if key in fields and getattr(data, key) != fields[key].default)
    if unused:
        users = [other.name for other in readers if unused[0] in other.target.data_keys]
        raise SpecError(f"data.{unused[0]}: applies to {' and '.join(users)} data, but {what}; remove "
                        f"{', '.join(f'data.{key}' for key in unused)}")


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
