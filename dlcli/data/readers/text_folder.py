"""The text folder reader: a folder with one subfolder of .txt files per class (aclImdb/train/pos/*.txt), one
example a file, as Keras' text_dataset_from_directory reads it; for predict, a folder of .txt files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli import registry
from dlcli.data.folders import record_files, usual_example_suffix, walk_files
from dlcli.data.image_files import bad_files_message
from dlcli.data.prefetch import default_threads
from dlcli.data.readers.class_folders import (EXAMPLE_SUFFIXES, FOLDER_KEYS, class_ids, describe_folder,
                                             folder_listing)
from dlcli.data.readers.reader import Examples, Reader
from dlcli.data.readers.request import DataKeys, ReadRequest, single_name
from dlcli.data.text_files import TextRows, read_texts
from dlcli.errors import DataError


@registry.readers.register("text_folder")
class TextFolderReader(Reader):
    """UTF-8 .txt files, one example a file, one subfolder of them a class, for a model that takes text."""

    directory = True
    data_keys = FOLDER_KEYS

    @classmethod
    def accepts(cls, path: Path) -> bool:
        """A folder whose first example file is a .txt file."""
        return path.is_dir() and usual_example_suffix(path, EXAMPLE_SUFFIXES) == ".txt"

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """A training split (texts and their classes' ids), or (inputs only) every .txt file of the folder."""
        name = single_name(request.inputs, "input")
        if not request.inputs[name].takes_text:
            raise DataError(f"{path} is a folder of text files, but the model's input {name!r} is numeric; give "
                            f"it dtype = \"string\" and shape = [1] and start the model with text_vectorization")
        if request.targets is None:
            files = list(walk_files(path, (".txt",), request.data.follow_links))
            texts, _ = read_text_files(files, request.data, str(path))
            return Examples({name: texts}, sources=texts.sources)
        output = single_name(request.targets, "output")
        listing = folder_listing(path, request.data, "text")
        ids = class_ids(request, output, listing)
        texts, kept = read_text_files(listing.files, request.data, str(path))
        record_files(request.schema, path, listing.files, kept, ids)
        y = request.target_array(ids[kept], output, str(path), lambda row: (texts.sources or [])[row])
        return Examples({name: texts}, {output: y})

    def describe(self, path: Path, request: ReadRequest) -> dict[str, Any]:
        """For the data report (dlcli validate --data-report): the texts' lengths in characters and in words, and
        the files read and skipped."""
        return describe_folder(self, path, request)


def read_text_files(files: list[Path], data: DataKeys, where: str) -> tuple[TextRows, np.ndarray]:
    """Every file's text, read on the decode threads, and which files they are (a mask): files that are not UTF-8
    or cannot be read are one DataError naming them all, or (data.on_bad_file = "skip") left out."""
    if not files:
        raise DataError(f"{where} holds no .txt files")
    texts, bad = read_texts(files, data.decode_threads or default_threads())
    if bad and data.on_bad_file == "error":
        raise DataError(bad_files_message(bad, len(files), where, "text"))
    kept = np.array([text is not None for text in texts], bool)
    if not kept.any():
        raise DataError(f"{where}: none of its {len(files):,} text files can be read")
    return (TextRows([text for text in texts if text is not None],
                     [str(file) for file, text in zip(files, texts) if text is not None]), kept)
