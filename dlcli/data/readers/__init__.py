"""The readers of users' data files, one a file, each registered in registry.readers by what it accepts; and the
one dispatcher (read_examples) through which train, validate, eval and predict read them. See reader.py."""

from dlcli.data.readers import (csv_file, image_folder, npy_pair, npz, parquet_file, text_folder,  # noqa: F401
                                text_lines, timeseries)  # importing registers them
from dlcli.data.readers.reader import (Examples, Reader, describe_file, read_examples, reader_for,
                                      refuse_keys_of_other_readers, unsupported_message)
from dlcli.data.readers.request import InputSlot, ReadRequest, TargetSlot, single_name

__all__ = ["Examples", "InputSlot", "ReadRequest", "Reader", "TargetSlot", "describe_file", "read_examples",
           "reader_for", "refuse_keys_of_other_readers", "single_name", "unsupported_message"]
