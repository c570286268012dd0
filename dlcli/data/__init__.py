"""Datasets as NumPy arrays: the registry, downloads and their cache, file readers, splits and batches."""

from dlcli.data.batches import (batch_slices, check_finite, check_labels, check_lengths, one_hot, shuffled_order,
                                split_validation)
from dlcli.data.catalog import (Dataset, DatasetInfo, DatasetRow, DatasetSplits, RemoteFile, bundled_dir,
                                bundled_file, dataset_info, keras_split, list_datasets, load_dataset)
from dlcli.data.download import cache_dir, fetch, file_sha256, local_copy, mirror_dir
from dlcli.data.readers import (read_csv, read_csv_columns, read_csv_text, read_idx, read_npy, read_npz,
                                read_table, read_text_lines)

__all__ = [
    "Dataset", "DatasetInfo", "DatasetRow", "DatasetSplits", "RemoteFile",
    "batch_slices", "bundled_dir", "bundled_file", "cache_dir", "check_finite", "check_labels", "check_lengths",
    "dataset_info", "fetch", "file_sha256", "keras_split", "list_datasets", "load_dataset", "local_copy",
    "mirror_dir", "one_hot", "read_csv", "read_csv_columns", "read_csv_text", "read_idx", "read_npy", "read_npz",
    "read_table", "read_text_lines", "shuffled_order", "split_validation",
]
