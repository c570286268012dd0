"""[data] of a spec: where the examples come from (a registry dataset, or the user's files and folders), how
they are read, split and weighed, and [data.timeseries] windows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from dlcli.registry import StrictSpec


class TimeseriesSpec(StrictSpec):
    """[data.timeseries]: windows over the rows of a time-ordered table, as Keras' timeseries_dataset_from_array
    cuts them; the training, validation and test ranges are consecutive rows, in time order."""

    features: list[str] | None = Field(None, description="Feature columns, names or 'first:last' ranges; default: "
                                                         "every column (the target's past is an input too).")
    target: str | None = Field(None, description="The column a window predicts, `delay` rows after its last row.")
    sequence_length: int = Field(gt=0, description="Time steps in a window (rows, after sampling_rate).")
    sampling_rate: int = Field(1, gt=0, description="Rows between the time steps of a window: 6 takes every 6th "
                                                    "row (hourly from 10-minute rows).")
    sequence_stride: int = Field(1, gt=0, description="Rows between the first rows of successive windows.")
    delay: int = Field(1, ge=0, description="Rows from a window's last row to its target (1: the next row; 0: the "
                                            "last row itself).")
    validation_split: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the rows, after the training "
                                                                    "rows, that validation windows come from.")
    test_split: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the rows, the last ones, that test "
                                                              "windows come from (dlcli eval).")

    @model_validator(mode="after")
    def _rows_left_for_training(self) -> TimeseriesSpec:
        if self.validation_split + self.test_split >= 1.0:
            raise ValueError(f"validation_split + test_split = {self.validation_split + self.test_split:g} leaves "
                             f"no rows for training; keep their sum below 1 (the book: 0.25 and 0.25)")
        return self


_CSV_COLUMNS = "of your own CSV or parquet file"
# [data] keys about the user's own files, each with what it does: with a registry dataset, whose arrays come
# ready-made, they would do nothing
_OWN_FILE_KEYS = {
    "test": "is a test file of your own",
    "validation": "is a validation file of your own",
    "inputs": "maps model inputs to arrays of your own .npz file",
    "targets": "maps model outputs to arrays of your own .npz file",
    "features": f"names columns {_CSV_COLUMNS}",
    "target": f"names a column {_CSV_COLUMNS}",
    "text": f"names a column {_CSV_COLUMNS}",
    "missing": f"says what to do with missing cells {_CSV_COLUMNS}",
    "fill_value": f"fills missing cells {_CSV_COLUMNS}",
    "sample_weight": "names a column or array of your own data file",
}
_DATASET_FIXES = {
    "test": "its own test split is what dlcli eval scores",
    "validation": "hold part of its training split out with validation_split = 0.1 instead",
    "sample_weight": "weigh classes with train.class_weight instead",
}


class DataSpec(StrictSpec):
    """[data]: where examples come from."""

    dataset: str | None = Field(None, description="A registry dataset by name (dlcli datasets lists them); give this "
                                                  "or train.")
    train: Path | None = Field(None, description="Your training data file, relative to the spec file (given with "
                                                 "--set: to the current directory); give this or dataset.")
    test: Path | None = Field(None, description="A test data file read like train: dlcli eval scores the model on "
                                                "it.")
    validation: Path | None = Field(None, description="A validation data file read like train; when given, "
                                                      "validation_split is not used.")
    inputs: dict[str, str] | None = Field(None, description="model input -> array name in the .npz")
    targets: dict[str, str] | None = Field(None, description="model output -> array name in the .npz")
    features: list[str] | None = Field(None, description="CSV feature columns, names or 'first:last' ranges")
    target: str | None = Field(None, description="CSV target column")
    text: str | None = Field(None, description="CSV column of raw text, for a model whose input has dtype "
                                               '"string"')
    validation_split: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the training examples held out for "
                                                                     "validation after a seeded shuffle.")
    one_hot: bool = Field(False, description="Turn integer class labels into one-hot rows (for "
                                             "categorical_crossentropy).")
    missing: Literal["error", "drop_rows", "fill_mean", "fill_value"] = Field(
        "error", description="Missing CSV cells (empty, NA, NaN, null, ...): an error naming the line, or drop "
                             "those rows, or fill feature cells with the training part's column mean or fill_value")
    fill_value: float | None = Field(None, description='The number missing feature cells get with missing = '
                                                       '"fill_value"')
    options: dict[str, Any] = Field({}, description="Options of the registry dataset, e.g. num_words = 10000 (see "
                                                    "Datasets below).")
    # folders of images or texts, one subfolder a class (Keras' image_dataset_from_directory and
    # text_dataset_from_directory, with their names and defaults)
    image_size: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=2, max_length=2)] = Field(
        [256, 256], description="Image folders: the [height, width] every image is resized to (Keras' default).")
    color_mode: Literal["grayscale", "rgb", "rgba"] = Field(
        "rgb", description="Image folders: the channels each image is converted to: 1, 3 or 4.")
    interpolation: Literal["bilinear", "nearest"] = Field(
        "bilinear", description="Image folders: how images are resized, as Keras resizes them (antialias off).")
    crop_to_aspect_ratio: bool = Field(False, description="Image folders: crop the largest centred window of the "
                                                          "image_size aspect ratio before resizing, instead of "
                                                          "stretching.")
    class_names: list[str] | None = Field(None, min_length=1, description="Folders: the class subfolders to read, in "
                                                                          "the order of their ids (default: every "
                                                                          "subfolder, sorted by name).")
    labels: Literal["inferred"] | Path = Field("inferred", description='Folders: "inferred" from the class subfolders, '
                                                                      "or a CSV file of path,label lines (paths "
                                                                      "relative to the folder).")
    follow_links: bool = Field(False, description="Folders: also walk subfolders that are symbolic links (each real "
                                                  "folder once).")
    on_bad_file: Literal["error", "skip"] = Field(
        "error", description="Folders: a file that is not a whole image or UTF-8 text is an error naming every "
                             "such file, or is skipped (the start event counts them).")
    cache: Literal["none", "memory", "disk"] = Field(
        "none", description="Image folders: keep decoded images for later epochs in RAM, or on disk under the "
                            "dataset cache for later runs too.")
    decode_threads: int | None = Field(None, gt=0, le=256, description="Folders: threads that check, read and "
                                                                       "decode files (default: the cores, at most "
                                                                       "4); results do not depend on it.")
    timeseries: TimeseriesSpec | None = Field(None, description="Windows over a time-ordered .csv or .parquet table "
                                                                "(see [data.timeseries]).")
    sample_weight: str | None = Field(None, description="Each example's weight in the loss and weighted metrics: "
                                                        "a CSV or parquet column, or an array of the .npz.")
    folds: int | None = Field(None, ge=2, le=1000, description="K-fold validation: K runs under runs/<name>/fold-<i>/, "
                                                              "each validating on its own K-th of the training data.")
    fold: int | None = Field(None, ge=1, description="The one fold this run validates on (1 to folds); dlcli train "
                                                     "sets it for each fold's run.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.train is None):
            raise ValueError('give exactly one of dataset = "NAME" (see `dlcli datasets`) or train = "PATH"')
        if self.text is not None and self.features is not None:
            raise ValueError("give text = \"COLUMN\" (a model input of dtype \"string\") or features = [...] "
                             "(numeric columns), not both: a CSV file feeds one model input")
        if (self.missing == "fill_value") != (self.fill_value is not None):
            raise ValueError('missing = "fill_value" needs the number to fill with: add fill_value = 0 (for '
                             'example)' if self.fill_value is None else f'fill_value = {self.fill_value} is used '
                             f'only with missing = "fill_value" (missing is "{self.missing}"); add that, or drop '
                             f'fill_value')
        if self.timeseries is not None:
            self._fits_a_time_series(self.timeseries)
        if self.folds is not None or self.fold is not None:
            self._fits_folds()
        return self

    @field_validator(*_OWN_FILE_KEYS)
    @classmethod
    def _not_with_a_dataset(cls, value: Any, info: ValidationInfo) -> Any:
        """A key about your own files, set with a registry dataset, is refused by name (dataset is checked first)."""
        key, dataset = info.field_name, info.data.get("dataset")
        assert key is not None
        if dataset is not None and value != cls.model_fields[key].default:
            fix = _DATASET_FIXES.get(key, "the dataset feeds a one-input, one-output model as it is")
            raise ValueError(f"{_OWN_FILE_KEYS[key]}; a registry dataset ({dataset!r}) brings its own arrays: remove "
                             f"data.{key} ({fix}), or give train = \"PATH\" for your own data")
        return value

    def _fits_folds(self) -> None:
        """K-fold validation holds out each fold in turn, so nothing else may hold out validation data."""
        if self.folds is None:
            raise ValueError(f"fold = {self.fold} picks one of data.folds; give folds = K as well")
        if self.fold is not None and self.fold > self.folds:
            raise ValueError(f"fold = {self.fold} is past the {self.folds} folds; give 1 to {self.folds}")
        if self.validation_split or self.validation is not None:
            raise ValueError("folds holds out each fold in turn for validation; drop validation_split and "
                             "validation")
        if self.timeseries is not None:
            raise ValueError("folds would validate on windows from before the ones it trains on; time series take "
                             "timeseries.validation_split, the rows after the training rows")

    def _fits_a_time_series(self, series: TimeseriesSpec) -> None:
        """[data.timeseries] names its own columns and splits in time order; keys that would do either otherwise
        are refused, each with its replacement."""
        if self.dataset is not None:
            raise ValueError("timeseries cuts windows from your own table: give train = \"PATH\" (a .csv or "
                             ".parquet file), not a dataset")
        moved = [key for key in ("features", "target", "text") if getattr(self, key) is not None]
        if moved:
            raise ValueError(f"with [data.timeseries], give {', '.join(moved)} in it (timeseries.{moved[0]}), not "
                             f"in [data]")
        if self.validation_split:
            raise ValueError("validation_split shuffles examples before holding some out, which would let windows "
                             "from later times train a model validated on earlier ones; give "
                             "timeseries.validation_split instead (the rows after the training rows)")
        if self.missing == "drop_rows":
            raise ValueError('missing = "drop_rows" would close the gaps in time that dropped rows leave; fill '
                             'them instead ("fill_mean" or "fill_value") or fix the table')
        for key in ("validation", "test"):
            if getattr(self, key) is not None and getattr(series, f"{key}_split"):
                raise ValueError(f"give {key} = \"PATH\" or timeseries.{key}_split, not both")


# class_weight = "balanced" | { "0" = 1.0, "1" = 5.0 } (class ids or names) | { output = "balanced" or a table }
