"""The image folder reader: a folder with one subfolder of images per class, as Keras'
image_dataset_from_directory reads it (or labels from a CSV of path,label), every file checked before training
and the images decoded on worker threads as batches need them; for predict, one image, a folder of images, or a
text file of image paths (see text_lines.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli import registry
from dlcli.data.download import cache_dir
from dlcli.data.folders import record_files, usual_example_suffix, walk_files
from dlcli.data.image_cache import cache_key, open_store
from dlcli.data.image_files import ImageFiles, bad_files_message, check_files
from dlcli.data.images import CHANNELS, IMAGE_SUFFIXES, DecodeOptions
from dlcli.data.prefetch import default_threads
from dlcli.data.readers.class_folders import (EXAMPLE_SUFFIXES, FOLDER_KEYS, class_ids, describe_folder,
                                             folder_listing)
from dlcli.data.readers.reader import Examples, Reader
from dlcli.data.readers.request import DataKeys, ReadRequest, single_name
from dlcli.errors import DataError, SpecError

IMAGE_KEYS = frozenset({"image_size", "color_mode", "interpolation", "crop_to_aspect_ratio", "cache"})


@registry.readers.register("image_folder")
class ImageFolderReader(Reader):
    """Images, one subfolder of them a class (or single images, for predict): PNG, JPEG, BMP, GIF or WebP."""

    suffixes = IMAGE_SUFFIXES
    directory = True
    data_keys = IMAGE_KEYS | FOLDER_KEYS

    @classmethod
    def accepts(cls, path: Path) -> bool:
        """An image file, or a folder whose first example file is an image (a folder of .txt files is text)."""
        if any(path.name.lower().endswith(suffix) for suffix in cls.suffixes):
            return True
        return path.is_dir() and usual_example_suffix(path, EXAMPLE_SUFFIXES) != ".txt"

    def read(self, path: Path, request: ReadRequest) -> Examples:
        """A training split (images and their classes' ids), or (inputs only) the images of a file or folder."""
        name = single_name(request.inputs, "input")
        options = decode_options(request.data)
        _check_input(request, name, options)
        if request.targets is None:
            files = [path] if not path.is_dir() else list(walk_files(path, IMAGE_SUFFIXES, request.data.follow_links))
            if not files:
                raise DataError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            images, _, _ = checked_images(files, request.data, options, str(path))
            return Examples({name: images}, sources=images.paths())
        if not path.is_dir():
            raise DataError(f"{path} is one image, without a label: to train or evaluate, give a folder with one "
                            f"subfolder of images per class (photos/cats/, photos/dogs/)")
        output = single_name(request.targets, "output")
        listing = folder_listing(path, request.data, "image")
        ids = class_ids(request, output, listing)
        images, kept, seconds = checked_images(listing.files, request.data, options, str(path))
        record_files(request.schema, path, listing.files, kept, ids, seconds)
        y = request.target_array(ids[kept], output, str(path), lambda row: str(images.files[row]))
        return Examples({name: images}, {output: y})

    def describe(self, path: Path, request: ReadRequest) -> dict[str, Any]:
        """For the data report (dlcli validate --data-report): the images' sizes, modes and formats (from their
        headers), the decoded shape, the cache, and the files checked and skipped."""
        return describe_folder(self, path, request)


def decode_options(data: DataKeys) -> DecodeOptions:
    """The decode options of [data]: image_size, color_mode, interpolation, crop_to_aspect_ratio."""
    height, width = data.image_size
    return DecodeOptions(height, width, data.color_mode, data.interpolation, data.crop_to_aspect_ratio)


def _check_input(request: ReadRequest, name: str, options: DecodeOptions) -> None:
    """The model's input takes images of exactly the decoded shape; else a SpecError saying what to set."""
    slot = request.inputs[name]
    if slot.takes_text:
        raise SpecError(f"model input {name!r} takes text (dtype = \"string\"), but the data is images; give it "
                        f"dtype = \"float32\" and shape = {list(options.shape)}")
    if slot.shape is None or tuple(slot.shape) == options.shape:
        return
    found = f"images are decoded to {list(options.shape)} (data.image_size = {[options.height, options.width]}, " \
            f"color_mode = \"{options.color_mode}\")"
    modes = {channels: mode for mode, channels in CHANNELS.items()}
    if len(slot.shape) == 3 and slot.shape[2] in modes:
        height, width, channels = slot.shape
        fix = f"set data.image_size = [{height}, {width}] and data.color_mode = \"{modes[channels]}\", or change the " \
              f"input's shape"
    else:
        fix = "an image input's shape is [height, width, channels], channels 1 (grayscale), 3 (rgb) or 4 (rgba)"
    raise SpecError(f"data.image_size: the {found}, but the model's input {name!r} takes {list(slot.shape)}; {fix}")


def checked_images(files: list[Path], data: DataKeys, options: DecodeOptions,
                   where: str) -> tuple[ImageFiles, np.ndarray, float]:
    """The images of `files`, which files they are (a mask) and the seconds the check took: every file's header
    and end is checked first on the decode threads, and bad files are one DataError naming them all, or (data.
    on_bad_file = "skip") left out."""
    threads = data.decode_threads or default_threads()
    checked = check_files(files, threads, with_digests=data.cache == "disk")
    if checked.bad and data.on_bad_file == "error":
        raise DataError(bad_files_message(checked.bad, len(files), where))
    if not checked.kept.any():
        raise DataError(f"{where}: none of its {len(files):,} image files can be read")
    good = [file for file, kept in zip(files, checked.kept) if kept]
    key = cache_key(options, checked.digests) if data.cache == "disk" else None
    store = open_store(data.cache, len(good), options.shape, cache_dir() / "images", key)
    return ImageFiles(good, options, threads, store, checked.headers), checked.kept, checked.seconds


def read_listed_images(path: Path, lines: list[str], request: ReadRequest) -> Examples:
    """Predict's text file of image paths, one a line (relative to the file's folder): the images, by path."""
    name = single_name(request.inputs, "input")
    options = decode_options(request.data)
    _check_input(request, name, options)
    files = [path.parent / line.strip() for line in lines if line.strip()]
    if not files:
        raise DataError(f"{path} lists no image paths")
    images, _, _ = checked_images(files, request.data, options, str(path))
    return Examples({name: images}, sources=images.paths())
