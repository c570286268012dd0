"""Datasets as NumPy arrays: the registry, downloads and their cache, readers of users' files, splits and batches."""

from dlcli.data.batches import (batch_slices, check_examples, check_finite, check_labels, check_lengths, is_lazy,
                                listed_rows, nonfinite_rows, one_hot, refuse_nonfinite, shuffled_order, split_folds,
                                split_validation)
from dlcli.data.catalog import (Dataset, DatasetInfo, DatasetRow, DatasetSplits, RemoteFile, bundled_dir,
                                bundled_file, dataset_info, keras_split, list_datasets, load_dataset)
from dlcli.data.csv_examples import (FILL_POLICIES, MISSING_POLICIES, CsvExamples, CsvRecipe, fill_from_training,
                                     fill_missing, fill_values, read_csv_examples)
from dlcli.data.csv_table import read_csv, read_csv_columns, read_csv_text, read_table
from dlcli.data.download import cache_dir, fetch, file_sha256, local_copy, mirror_dir
from dlcli.data.dtypes import check_input_dtype, check_target_dtype
from dlcli.data.files import existing_file
from dlcli.data.idx import read_idx
from dlcli.data.readers import (Examples, InputSlot, ReadRequest, TargetSlot, describe_file, read_examples,
                                reader_for, refuse_keys_of_other_readers, single_name)
from dlcli.data.readers.npy_pair import read_npy
from dlcli.data.readers.npz import read_npz
from dlcli.data.readers.text_lines import read_text_lines

__all__ = [
    "CsvExamples", "CsvRecipe", "Dataset", "DatasetInfo", "DatasetRow", "DatasetSplits", "Examples", "FILL_POLICIES",
    "InputSlot", "MISSING_POLICIES", "ReadRequest", "RemoteFile", "TargetSlot", "batch_slices", "bundled_dir",
    "bundled_file", "cache_dir", "check_examples", "check_finite", "check_input_dtype", "check_labels",
    "check_lengths", "check_target_dtype", "dataset_info", "describe_file", "existing_file", "fetch", "file_sha256",
    "fill_from_training", "fill_missing", "fill_values", "is_lazy", "keras_split", "list_datasets", "listed_rows",
    "load_dataset", "local_copy", "mirror_dir", "nonfinite_rows", "one_hot", "read_csv", "read_csv_columns",
    "read_csv_examples", "read_csv_text", "read_examples", "read_idx", "read_npy", "read_npz", "read_table",
    "read_text_lines", "reader_for", "refuse_keys_of_other_readers", "refuse_nonfinite", "shuffled_order",
    "single_name", "split_folds", "split_validation",
]
