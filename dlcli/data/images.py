"""Image files with Pillow: the check of a file before training (its header and its end), and its decoding to a
uint8 array of the run's size and colour mode, as Keras' image_dataset_from_directory decodes and resizes.

Resizing follows Keras' default path (tf.image.resize, antialias off): a pixel centre of the output maps to
(out + 0.5) * in / out - 0.5 in the input, "bilinear" interpolates the two nearest rows and columns (clamped at
the edges, as TF and PyTorch clamp them), and "nearest" takes floor((out + 0.5) * in / out). Keras keeps the
result as float32; dlcli rounds it to uint8, so images stay 1 byte a channel until the model's input (the model's
`rescaling` layer scales them): each pixel is within 0.5 of Keras' value.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dlcli.data.files import os_problem, whole_file
from dlcli.data.plain_png import plain_png

FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "BMP": (".bmp",), "GIF": (".gif",), "WEBP": (".webp",)}
# the file name endings read as images: Keras' five, and .webp (a Pillow built without WebP names such files as
# unreadable in the check before training)
IMAGE_SUFFIXES = tuple(suffix for suffixes in FORMATS.values() for suffix in suffixes)
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
_TAIL = 1024  # bytes read from a file's end: where a complete JPEG or GIF has its end marker


def pillow_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot read: a damaged or unknown file, never a bug of ours."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, Image.DecompressionBombError)


@dataclass(frozen=True)
class DecodeOptions:
    """How every image of a run is decoded: Keras' image_size (height, width), color_mode, interpolation and
    crop_to_aspect_ratio."""

    height: int
    width: int
    color_mode: str = "rgb"
    interpolation: str = "bilinear"
    crop_to_aspect_ratio: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of a decoded image."""
        return self.height, self.width, CHANNELS[self.color_mode]


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: its format, size and Pillow mode (for the data report)."""

    format: str
    width: int
    height: int
    mode: str


class BadImage(Exception):
    """A file that cannot be read as an image; its message says why, in a few words, for the list of bad files."""


def probe(path: Path) -> ImageHeader:
    """The header of image file `path`, after checking that it is a whole image: BadImage saying why not.

    Fast: Pillow reads the header; a PNG's chunks are read and their checksums checked (no decompression);
    other formats' last bytes must hold their end marker (JPEG's end of image, GIF's trailer). Where that is
    inconclusive (BMP, WebP, data after the end marker) the image is decoded. A JPEG damaged inside, with no
    checksum to tell, may still pass: its decoder then fails or makes a wrong picture, as in Keras.
    """
    from PIL import Image

    try:
        size = path.stat().st_size
        if size == 0:
            raise BadImage("an empty file (0 bytes)")
        with open(path, "rb") as stream:
            with Image.open(stream) as image:
                header = ImageHeader(str(image.format), image.width, image.height, image.mode)
                if header.format not in FORMATS:
                    raise BadImage(f"a {header.format} image; dlcli reads {', '.join(FORMATS)}")
                if header.format == "PNG":
                    image.verify()  # every chunk's checksum, without decompressing: damage anywhere is found
                else:
                    stream.seek(max(0, size - _TAIL))
                    if not _ends_whole(header.format, stream.read()):
                        image.load()  # decodes, raising for a truncated file; extra data after the end passes
    except OSError as err:
        if err.errno is not None:
            raise BadImage(os_problem(path, err).removeprefix(f"{path} ")) from None
        raise BadImage(_described(err)) from None
    except pillow_errors() as err:
        raise BadImage(_described(err)) from None
    return header


def _ends_whole(image_format: str, tail: bytes) -> bool:
    """Whether a file's last bytes show it was written to the end."""
    if image_format == "JPEG":
        return b"\xff\xd9" in tail[-16:]
    if image_format == "GIF":
        return tail.endswith(b";")
    return False


def _described(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if text.startswith("cannot identify image file"):
        return "not an image Pillow can read"
    if "truncated" in text.lower():
        return "truncated: the file ends before its image does (written or copied incompletely)"
    return f"damaged ({text})"


def decode(path: Path, options: DecodeOptions, out: np.ndarray | None = None) -> np.ndarray:
    """The image in `path` as uint8 (height, width, channels), converted to options.color_mode, cropped to the
    target's aspect ratio if asked, and resized; written into `out` when given (a row of a batch: no array of its
    own); BadImage saying why it cannot be read."""
    from PIL import Image

    try:
        data = whole_file(path)  # the whole file at once: Pillow then parses memory, not a file a few bytes a call
        plain = plain_png(data, options.height, options.width, options.color_mode, out)
        if plain is not None:  # a PNG already of the run's size and mode: only its decoding is left to do
            return plain
        with Image.open(io.BytesIO(data)) as opened:
            pixels = _pixels(opened, options.color_mode)  # a GIF's first frame: Pillow opens at frame 0
    except OSError as err:
        if err.errno is not None:
            raise BadImage(os_problem(path, err).removeprefix(f"{path} ")) from None
        raise BadImage(_described(err)) from None
    except pillow_errors() as err:
        raise BadImage(_described(err)) from None
    if options.crop_to_aspect_ratio:
        pixels = _cropped(pixels, options.height, options.width)
    return _copied(resize(pixels, options.height, options.width, options.interpolation), out)


def _copied(pixels: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return pixels
    out[...] = pixels
    return out


def _pixels(image: object, color_mode: str) -> np.ndarray:
    """A Pillow image's pixels in the colour mode, uint8 (height, width, channels). 16- and 32-bit grey keeps
    its high byte, as TensorFlow's decoders reduce it; every other mode goes through Pillow's convert (alpha
    dropped for rgb, ITU-R 601 luma for grayscale)."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image).astype(np.int64)
        grey = np.clip(wide >> (8 if image.mode.startswith("I;16") else 24), 0, 255).astype(np.uint8)
        image = Image.fromarray(grey, "L")
    if image.mode != _PIL_MODES[color_mode]:
        image = image.convert(_PIL_MODES[color_mode])
    pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _cropped(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred window of the target's aspect ratio, as Keras' crop_to_aspect_ratio computes it."""
    rows, columns = pixels.shape[:2]
    crop_rows = max(min(rows, int(float(columns * height) / width)), 1)
    crop_columns = max(min(columns, int(float(rows * width) / height)), 1)
    top, left = int(float(rows - crop_rows) / 2), int(float(columns - crop_columns) / 2)
    return pixels[top:top + crop_rows, left:left + crop_columns]


def resize(pixels: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    """uint8 (rows, columns, channels) resized to (height, width), as tf.image.resize samples (antialias off),
    rounded to uint8. The same size is returned as it is."""
    rows, columns = pixels.shape[:2]
    if (rows, columns) == (height, width):
        return np.ascontiguousarray(pixels)
    if interpolation == "nearest":
        return np.ascontiguousarray(pixels[_nearest(rows, height)][:, _nearest(columns, width)])
    low_r, high_r, frac_r = _bilinear(rows, height)
    low_c, high_c, frac_c = _bilinear(columns, width)
    values = pixels.astype(np.float32)
    across = values[:, low_c] + (values[:, high_c] - values[:, low_c]) * frac_c[None, :, None]
    out = across[low_r] + (across[high_r] - across[low_r]) * frac_r[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _nearest(size: int, out: int) -> np.ndarray:
    """Source index of each output position: floor((out + 0.5) * scale), TF's half-pixel nearest neighbour."""
    return np.minimum(np.floor((np.arange(out) + 0.5) * (size / out)).astype(np.int64), size - 1)


@lru_cache(maxsize=64)
def _bilinear(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, weight of the upper) of each output position, half-pixel centres, clamped."""
    source = np.maximum((np.arange(out, dtype=np.float64) + 0.5) * (size / out) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    return low, high, (source - low).astype(np.float32)
