"""The readers of users' data files, one a file, each registered in registry.readers by what it accepts; and the
one dispatcher (read_examples) through which train, validate, eval and predict read them. See reader.py."""

from dlcli.data.readers import (csv_file, image_folder, npy_pair, npz, text_folder,  # noqa: F401 - importing
                                text_lines)  # registers them
from dlcli.data.readers.reader import (Examples, Reader, read_examples, reader_for, refuse_keys_of_other_readers,
                                      unsupported_message)
from dlcli.data.readers.request import InputSlot, ReadRequest, TargetSlot, single_name

__all__ = ["Examples", "InputSlot", "ReadRequest", "Reader", "TargetSlot", "read_examples", "reader_for",
           "refuse_keys_of_other_readers", "single_name", "unsupported_message"]
