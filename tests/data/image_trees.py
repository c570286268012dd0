"""Folders of real image and text files that the tests write: one subfolder per class, each image's pixels telling
which file it is, so a test can check that every example is the file it should be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pixels_of(class_id: int, index: int, size: tuple[int, int] = (6, 5), channels: int = 3) -> np.ndarray:
    """The uint8 image (height, width, channels) written for file `index` of class `class_id`: a pattern whose
    first pixel is 40 * class + index, so it identifies the file."""
    height, width = size
    base = np.arange(height * width * channels).reshape(height, width, channels) % 7
    return (base + 40 * class_id + index).astype(np.uint8)


def write_image_tree(root: Path, counts: dict[str, int], size: tuple[int, int] = (6, 5),
                     suffix: str = ".png") -> dict[str, list[Path]]:
    """root/<class>/<index><suffix> for each class and count, lossless (PNG, BMP, GIF of few colours); returns the
    files of each class, in the order Keras lists them."""
    files: dict[str, list[Path]] = {}
    for class_id, (name, count) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        files[name] = []
        for index in range(count):
            path = root / name / f"{index:03d}{suffix}"
            Image.fromarray(pixels_of(class_id, index, size)).save(path)
            files[name].append(path)
    return files


def write_text_tree(root: Path, texts: dict[str, list[str]]) -> None:
    """root/<class>/<index>.txt holding each text, UTF-8."""
    for name, items in texts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index, text in enumerate(items):
            (root / name / f"{index:03d}.txt").write_text(text, encoding="utf-8")
