"""PNG row filters undone (the PNG specification's section 9: none, sub, up, average, Paeth), for 8-bit images
that data/plain_png.py inflated with zlib: the part of PNG decoding that is neither zlib nor bookkeeping.

A nogil kernel, so decode threads unfilter while the training step holds the GIL; it writes straight into the
image's row of its batch. Pillow's decoder did the same work holding the GIL for about a third of each
64x64 image's decode time (tests check the pixels against Pillow's).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, no_cfunc_wrapper=True)
def unfilter_rows(raw: np.ndarray, out: np.ndarray, pixel_bytes: int) -> bool:
    """Undo the filter of each row of `raw` (uint8: per row a filter type byte, then out.shape[1] bytes) into
    out (uint8, (rows, row bytes)); `pixel_bytes` is bytes per pixel (channels, at 8 bits). False if a row
    names a filter type PNG does not have (damaged data)."""
    rows, width = out.shape
    for y in range(rows):
        start = y * (width + 1)
        kind = raw[start]
        source = start + 1
        if kind == 0:
            for x in range(width):
                out[y, x] = raw[source + x]
        elif kind == 1:  # sub: plus the byte one pixel left
            for x in range(width):
                left = np.int32(out[y, x - pixel_bytes]) if x >= pixel_bytes else np.int32(0)
                out[y, x] = (np.int32(raw[source + x]) + left) & 255
        elif kind == 2:  # up: plus the byte above
            for x in range(width):
                above = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
                out[y, x] = (np.int32(raw[source + x]) + above) & 255
        elif kind == 3:  # average: plus the floor of the mean of left and above
            for x in range(width):
                left = np.int32(out[y, x - pixel_bytes]) if x >= pixel_bytes else np.int32(0)
                above = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
                out[y, x] = (np.int32(raw[source + x]) + ((left + above) >> 1)) & 255
        elif kind == 4:  # Paeth: plus whichever of left, above, upper left is nearest left + above - upper left
            for x in range(width):
                left = np.int32(out[y, x - pixel_bytes]) if x >= pixel_bytes else np.int32(0)
                above = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
                corner = np.int32(out[y - 1, x - pixel_bytes]) if y > 0 and x >= pixel_bytes else np.int32(0)
                guess = left + above - corner
                to_left, to_above, to_corner = abs(guess - left), abs(guess - above), abs(guess - corner)
                if to_left <= to_above and to_left <= to_corner:
                    nearest = left
                elif to_above <= to_corner:
                    nearest = above
                else:
                    nearest = corner
                out[y, x] = (np.int32(raw[source + x]) + nearest) & 255
        else:
            return False
    return True
