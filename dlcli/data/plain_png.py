"""PNG files that already hold the run's size and colour mode, decoded without Image.open: the commonest case of a
prepared image folder. Image.open's work around the pixels (trying formats, parsing every chunk in Python, setting
up tiles, reading the file a few bytes a call) took a fifth of a 64x64 image's time, all of it holding the GIL
that the training step needs (measured here: 135 us an image through Image.open, 105 us through Pillow's decoder
alone, 54 us this way).

The file's chunks are walked here only to find the header and the compressed image data, which zlib (zlib-ng with
dlcli[fast-images]) inflates, releasing the GIL, and a nogil kernel unfilters (kernels/png.py) straight into the
image's row of its batch: the same bytes as Image.open(path).load() (the tests compare them). Anything else (another size or mode, 16 bits,
a palette, interlacing, an animation, an unknown critical chunk, a file cut short) returns None and goes the
general way, through Image.open.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (data.color_mode, PNG colour type) -> bytes a pixel, when the file needs no conversion
_SAME_MODE = {("grayscale", 0): 1, ("rgb", 2): 3, ("rgba", 6): 4}
# chunks that change which pixels the image has: a palette (colour type 3 is refused anyway) and APNG's frames,
# whose first frame Pillow may take from fdAT instead of IDAT
_PIXEL_CHUNKS = frozenset({b"PLTE", b"acTL", b"fcTL", b"fdAT"})
_KNOWN_CRITICAL = frozenset({b"IHDR", b"IDAT", b"IEND"})
_HEADER_END = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes, its CRC


def plain_png(data: bytes, height: int, width: int, color_mode: str, out: np.ndarray | None = None
              ) -> np.ndarray | None:
    """The pixels (uint8 (height, width, channels), written into `out` when given) of the PNG file `data` when it
    is 8 bits a channel, not interlaced, exactly (height, width) and already in `color_mode`'s mode (grayscale,
    rgb, rgba), so nothing but its decoding is left to do; else None. Damaged image data is a ValueError saying
    "damaged" or "truncated", as Pillow's would."""
    if len(data) < _HEADER_END or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    file_width, file_height, depth, colour_type, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    channels = _SAME_MODE.get((color_mode, colour_type))
    if channels is None or depth != 8 or interlace or (file_height, file_width) != (height, width):
        return None
    compressed = _image_data(data)
    if compressed is None:
        return None
    from dlcli.kernels.png import unfilter_rows

    inflater = _inflater()
    try:
        raw = inflater.decompress(compressed)
    except inflater.error as err:
        raise ValueError(f"damaged image data: {err}") from None
    if len(raw) < height * (width * channels + 1):
        raise ValueError("image data truncated: fewer pixels than the header says")
    pixels = out if out is not None and out.flags.c_contiguous else np.empty((height, width, channels), np.uint8)
    if not unfilter_rows(np.frombuffer(raw, np.uint8), pixels.reshape(height, width * channels), channels):
        raise ValueError("damaged image data: a row filter type PNG does not have")
    if out is not None and pixels is not out:
        out[...] = pixels
    return pixels if out is None else out


def load_kernels() -> None:
    """Load (or, on an empty Numba cache, compile) the unfilter kernel and the inflater now: a caller with time
    to spare (the file check's wait) takes this off the first batches, whose decoding the first steps wait
    for (0.3-0.6 s for the kernel from the cache, measured here)."""
    from dlcli.kernels.png import unfilter_rows

    _inflater()
    # raw as decoding passes it: inflated bytes, so a read-only array (a writable one is another signature)
    unfilter_rows(np.frombuffer(bytes(2), np.uint8), np.zeros((1, 1), np.uint8), 1)


@functools.cache
def _inflater() -> Any:
    """zlib-ng's zlib module when dlcli[fast-images] is installed (the same bytes, about 1.5x faster on PNG image
    data), else the standard library's."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib
    return zlib_ng


def _image_data(data: bytes) -> bytes | memoryview | None:
    """The IDAT chunks' contents joined (the zlib stream), or None if the file has a chunk that changes its pixels,
    a critical chunk Pillow may not skip, or ends before its IEND chunk."""
    view, parts, position = memoryview(data), [], _HEADER_END
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        start = position + 8
        if kind == b"IDAT":
            parts.append(view[start:start + length])
        elif kind == b"IEND":
            if not parts:
                return None
            return parts[0] if len(parts) == 1 else b"".join(parts)
        elif kind in _PIXEL_CHUNKS or (kind[0] < 0x61 and kind not in _KNOWN_CRITICAL):  # upper case: critical
            return None
        position = start + length + 4  # the chunk's data, then its CRC (the check before training read them)
    return None  # no IEND: a file cut short; Image.open says how
