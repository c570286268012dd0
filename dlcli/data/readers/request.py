"""What a reader is asked for: the model's inputs (and targets), the spec's [data] keys, and what training learned
about its data; with the checks every reader applies to the arrays it finds, so they are written once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from dlcli.data.batches import check_examples, refuse_nonfinite
from dlcli.data.dtypes import check_input_dtype, check_target_dtype
from dlcli.data.labels import check_class_count, check_class_ids, class_ids, class_list
from dlcli.errors import DataError, SpecError

Where = Callable[[int], str]  # row -> "FILE, row N" or "FILE, line N", for messages
NONFINITE_FIX = ("remove or fix those rows (data.missing handles missing CSV cells; in arrays, NaN and "
                 "infinity are always errors)")


class DataKeys(Protocol):
    """The keys of the spec's [data] table that readers use (dlcli.spec.models.DataSpec has them all)."""

    @property
    def inputs(self) -> dict[str, str] | None: ...  # model input -> array name
    @property
    def targets(self) -> dict[str, str] | None: ...  # model output -> array name
    @property
    def features(self) -> list[str] | None: ...  # CSV feature columns, names or "first:last" ranges
    @property
    def target(self) -> str | None: ...  # the CSV target column
    @property
    def text(self) -> str | None: ...  # the CSV column of raw text, for a text model
    @property
    def missing(self) -> str: ...  # the missing-value policy (csv_examples.MISSING_POLICIES)
    @property
    def options(self) -> dict[str, Any]: ...  # [data.options]: a reader's own options, when it declares them
    @property
    def image_size(self) -> list[int]: ...  # image folders: [height, width]
    @property
    def color_mode(self) -> str: ...  # image folders: grayscale, rgb or rgba
    @property
    def interpolation(self) -> str: ...  # image folders: bilinear or nearest
    @property
    def crop_to_aspect_ratio(self) -> bool: ...  # image folders
    @property
    def class_names(self) -> list[str] | None: ...  # folders: the class subfolders, in id order
    @property
    def labels(self) -> Any: ...  # folders: "inferred", or the Path of a CSV of path,label
    @property
    def follow_links(self) -> bool: ...  # folders
    @property
    def on_bad_file(self) -> str: ...  # folders: error or skip
    @property
    def cache(self) -> str: ...  # image folders: none, memory or disk
    @property
    def decode_threads(self) -> int | None: ...  # folders: None for the default
    @property
    def timeseries(self) -> Any: ...  # [data.timeseries]: windows over a table (spec.models.TimeseriesSpec) or None
    @property
    def sample_weight(self) -> str | None: ...  # the column or array of each example's weight


@dataclass(frozen=True)
class InputSlot:
    """A model input as readers see it: the dtype it takes ("float32", "int32", "int64" or "string") and the
    shape of one example."""

    dtype: str
    shape: tuple[int, ...] | None = None  # one example's shape, when the caller knows it

    @property
    def takes_text(self) -> bool:
        """Whether the input takes raw text (a model that starts with text_vectorization)."""
        return self.dtype == "string"


@dataclass(frozen=True)
class TargetSlot:
    """A model output's targets as readers see them; what the loss needs is decided by the caller, so that
    readers need not know the losses."""

    loss: str  # the loss's name, for messages
    width: int  # the output's last axis: the number of classes for a classifier
    class_names: bool = False  # a classification loss: labels may be class names ("cat"), mapped to ids
    class_ids: bool = False  # targets are class ids in [0, width), checked in file order (sparse loss, data.one_hot)
    binary: bool = False  # a single sigmoid unit: two class names for one unit
    label_lengths: bool = False  # label sequences (ctc): an array of their lengths may come beside them


@dataclass
class ReadRequest:
    """One file to read for one model: its inputs, its targets (None: inputs only, for predict), the [data] keys,
    and the run's schema (Splits.schema: CSV columns, class names, missing fills) to read it by.

    With `learn` (the training file, or a checkpoint older than the schema) what the schema lacks is learned from
    this file and added to it; otherwise class names the schema does not list are an error. Reading inputs only,
    NaN and infinity are let through: predict refuses or marks those rows itself, naming every one.
    """

    inputs: dict[str, InputSlot]
    targets: dict[str, TargetSlot] | None
    data: DataKeys
    schema: dict[str, Any] = field(default_factory=dict)
    learn: bool = True
    options: Any = None  # the reader's options model, validated from data.options (reader.py), when it has one

    def input_array(self, array: np.ndarray, name: str, label: str) -> np.ndarray:
        """An input array checked: at least one example, a dtype the input takes, and (unless reading inputs only)
        finite numbers."""
        check_examples(label, array)
        array = check_input_dtype(array, self.inputs[name].dtype, label)
        if self.targets is not None:
            refuse_nonfinite(array, rows_of(label), NONFINITE_FIX)
        return array

    def target_array(self, array: np.ndarray, output: str, label: str, where: Where) -> np.ndarray:
        """A target array checked (at least one example, a dtype the loss takes, finite numbers, class ids in
        range), class names mapped to ids with the class list of the schema (learned from the training file)."""
        slot = self.target(output)
        check_examples(label, array)
        array = check_target_dtype(array, slot.class_names, slot.loss, label)
        if array.dtype.kind == "U":
            names = np.char.strip(array)
            return class_ids(names, self.classes(output, class_list(names), label), where, "label")
        refuse_nonfinite(array, where, NONFINITE_FIX)
        self.check_ids(array, output, where, "label")
        return array

    @property
    def weight_name(self) -> str | None:
        """The column or array of each example's sample weight, when the spec names one and targets are read."""
        return getattr(self.data, "sample_weight", None) if self.targets is not None else None

    def weight_array(self, array: np.ndarray, label: str, where: Where) -> np.ndarray:
        """Sample weights checked: numbers, one per example (or per step: 2-D), finite and not negative."""
        check_examples(label, array)
        if array.dtype.kind not in "biuf" or array.ndim > 2:
            raise DataError(f"{label}: sample weights must be numbers, one per example (1-D) or per time step "
                            f"(2-D), found dtype {array.dtype} and shape {list(array.shape)}")
        refuse_nonfinite(array, where, NONFINITE_FIX)
        negative = np.flatnonzero((array < 0).reshape(len(array), -1).any(axis=1))
        if negative.size:
            raise DataError(f"{where(int(negative[0]))}: a sample weight is negative ({negative.size:,} rows hold "
                            f"one); a weight says how many times an example counts: 0 or more")
        return array.astype(np.float32)

    def check_ids(self, ids: np.ndarray, output: str, where: Where, column: str) -> None:
        """Class ids in range, checked in file order, for the losses (and data.one_hot) that take them."""
        slot = self.target(output)
        if slot.class_ids:
            check_class_ids(ids, slot.width, where, column)

    def classes(self, output: str, found: list[str], label: str) -> list[str]:
        """The class list of `output`: the schema's, or (learning) `found`, the names of this file, stored."""
        known = self.schema.get("classes", {})
        if output not in known and not self.learn:  # their ids would be made up here
            raise DataError(f"{label} holds class names, but the model was trained on numeric labels (class ids); "
                            f"give numeric labels, as in the training data")
        classes = known.get(output, found)
        slot = self.target(output)
        check_class_count(classes, slot.width, slot.binary, label)
        self.schema.setdefault("classes", {})[output] = classes
        return classes

    def target(self, output: str) -> TargetSlot:
        """The slot of output `output`, whose targets are being read."""
        assert self.targets is not None, "inputs only: no target to read"
        return self.targets[output]


def single_name(names: dict[str, Any], what: str) -> str:
    """The one name in `names` (a model's inputs or outputs), for a source that feeds one input and one output."""
    if len(names) != 1:
        raise SpecError(f"a registry dataset feeds one input and one output, but the model has {len(names)} "
                        f"{what}s; give train = \"file.npz\" with data.inputs and data.targets instead")
    return next(iter(names))


def rows_of(label: str) -> Where:
    """Row -> "LABEL, row N" for messages about an array (rows counted from 0, in the file's order)."""
    return lambda row: f"{label}, row {row}"
