"""PNG files already of the run's size and mode, decoded without Image.open: the same pixels as Pillow's own
decoding of the file, and every other PNG (another size or mode, 16 bits, a palette, interlaced, animated, cut
short) left to Image.open."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import dlcli.data.images as images
from dlcli.data.images import BadImage, DecodeOptions, decode
from dlcli.data.plain_png import plain_png

MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def _png(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth rows plus noise, so Pillow's encoder picks several row filters (none, sub, up, average, paeth)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, shape[1])[None, :, None] if len(shape) == 3 else np.linspace(0, 200, shape[1])
    return np.clip(ramp + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("color_mode", "shape"), [("rgb", (9, 7, 3)), ("rgba", (9, 7, 4)), ("grayscale", (9, 7)),
                                                   ("rgb", (300, 260, 3))])  # the last: several IDAT chunks
def test_a_png_of_the_runs_size_and_mode_decodes_to_pillows_own_pixels(tmp_path: Path, color_mode: str,
                                                                      shape: tuple[int, ...],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = _noise(shape)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "an ancillary chunk before the data")
    data = _png(pixels, pnginfo=info)
    path = tmp_path / "image.png"
    path.write_bytes(data)
    expected = np.asarray(Image.open(path).convert(MODES[color_mode])).reshape(*shape[:2], -1)
    assert np.array_equal(np.asarray(plain_png(data, *shape[:2], color_mode)).reshape(expected.shape), expected)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open was called")

    monkeypatch.setattr(Image, "open", no_open)  # the fast path never opens the file with Pillow
    out = np.zeros((2, *expected.shape), np.uint8)
    returned = decode(path, DecodeOptions(*shape[:2], color_mode), out[1])
    assert np.array_equal(out[1], expected) and not out[0].any()  # written into its row, nothing else
    assert np.shares_memory(returned, out)
    assert np.array_equal(decode(path, DecodeOptions(*shape[:2], color_mode)), expected)
    if len(data) > 70_000:
        assert data.count(b"IDAT") > 1


def _with_header_byte(data: bytes, offset: int, value: int) -> bytes:
    """`data` with one byte of IHDR's 13 changed and its CRC made right again."""
    header = bytearray(data[16:29])
    header[offset] = value
    return data[:16] + bytes(header) + struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header))) + data[33:]


def test_every_other_png_is_left_to_image_open_and_decodes_as_before(tmp_path: Path) -> None:
    rgb = _noise((6, 5, 3))
    apng = io.BytesIO()
    Image.fromarray(rgb).save(apng, "PNG", save_all=True, append_images=[Image.fromarray(255 - rgb)])
    palette = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(palette, "PNG")
    wide = io.BytesIO()
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(wide, "PNG")  # 16 bits a pixel
    cases = {"another size": (_png(rgb), (5, 5), "rgb"), "another mode": (_png(rgb), (6, 5), "rgba"),
             "grey as rgb": (_png(rgb[:, :, 0]), (6, 5), "rgb"), "palette": (palette.getvalue(), (6, 5), "rgb"),
             "16 bits": (wide.getvalue(), (6, 5), "grayscale"), "animated": (apng.getvalue(), (6, 5), "rgb"),
             "cut short": (_png(rgb)[:-30], (6, 5), "rgb"), "not a png": (b"GIF89a" + bytes(40), (6, 5), "rgb")}
    for name, (data, size, color_mode) in cases.items():
        assert plain_png(data, *size, color_mode) is None, name
    assert plain_png(_with_header_byte(_png(rgb), 12, 1), 6, 5, "rgb") is None  # interlaced
    for name in ("another size", "another mode", "grey as rgb", "palette", "16 bits", "animated"):
        data, size, color_mode = cases[name]
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        decoded = decode(path, DecodeOptions(*size, color_mode))
        with Image.open(path) as image:
            expected = images.resize(images._pixels(image, color_mode), *size, "bilinear")
        assert np.array_equal(decoded, expected), name
    (tmp_path / "cut.png").write_bytes(cases["cut short"][0])
    with pytest.raises(BadImage, match="truncated"):
        decode(tmp_path / "cut.png", DecodeOptions(6, 5))


def test_damaged_image_data_in_a_plain_png_is_a_bad_image(tmp_path: Path) -> None:
    data = bytearray(_png(_noise((8, 8, 3))))
    start = data.index(b"IDAT") + 4
    data[start + 2:start + 40] = bytes(38)  # the compressed stream, not its chunk's length or the IEND
    (tmp_path / "damaged.png").write_bytes(bytes(data))
    with pytest.raises(BadImage, match="damaged"):
        decode(tmp_path / "damaged.png", DecodeOptions(8, 8))


def _png_with_filters(pixels: np.ndarray, filters: list[int]) -> bytes:
    """An 8-bit RGB PNG whose row y is stored with filter type filters[y] (the spec's section 9 encodings)."""
    height, width, channels = pixels.shape
    rows, previous = [], np.zeros(width * channels, np.int64)
    for y, kind in enumerate(filters):
        row = pixels[y].reshape(-1).astype(np.int64)
        left = np.concatenate([np.zeros(channels, np.int64), row[:-channels]])
        corner = np.concatenate([np.zeros(channels, np.int64), previous[:-channels]])
        guess = left + previous - corner
        paeth = np.where((abs(guess - left) <= abs(guess - previous)) & (abs(guess - left) <= abs(guess - corner)),
                         left, np.where(abs(guess - previous) <= abs(guess - corner), previous, corner))
        predicted = [np.zeros_like(row), left, previous, (left + previous) // 2, paeth][kind] if kind < 5 else 0
        rows.append(bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes())
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def test_every_row_filter_is_undone_as_pillow_undoes_it(tmp_path: Path) -> None:
    pixels = _noise((10, 6, 3), seed=4)
    data = _png_with_filters(pixels, [4, 0, 1, 2, 3, 4, 3, 2, 1, 0])  # Paeth and average on the first row too
    path = tmp_path / "filters.png"
    path.write_bytes(data)
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(image), pixels)  # the test's encoder is right, by Pillow's decoder
    assert np.array_equal(plain_png(data, 10, 6, "rgb"), pixels)
    (tmp_path / "bad.png").write_bytes(_png_with_filters(pixels, [0, 1, 7, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(BadImage, match="damaged"):
        decode(tmp_path / "bad.png", DecodeOptions(10, 6))


def test_zlib_ng_and_zlib_inflate_to_the_same_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    from zlib_ng import zlib_ng

    import dlcli.data.plain_png as plain

    assert plain._inflater() is zlib_ng  # dlcli[fast-images] is in the test extra: the fast one is taken
    data = _png(_noise((40, 30, 3), seed=9))
    fast = plain_png(data, 40, 30, "rgb")
    monkeypatch.setattr(plain, "_inflater", lambda: zlib)
    assert np.array_equal(plain_png(data, 40, 30, "rgb"), fast)
    with Image.open(io.BytesIO(data)) as image:
        assert np.array_equal(fast, np.asarray(image))
    damaged = bytearray(data)
    start = damaged.index(b"IDAT") + 4
    damaged[start + 2:start + 40] = bytes(38)
    for inflater in (zlib, zlib_ng):
        monkeypatch.setattr(plain, "_inflater", lambda inflater=inflater: inflater)
        with pytest.raises(ValueError, match="damaged"):
            plain_png(bytes(damaged), 40, 30, "rgb")


def test_the_file_check_of_a_png_folder_loads_the_unfilter_kernel(tmp_path: Path) -> None:
    """So the first batches of epoch 1 do not wait for it (a fresh process: this one may have loaded it)."""
    import subprocess
    import sys

    (tmp_path / "a.png").write_bytes(_png(_noise((4, 4, 3))))
    (tmp_path / "b.jpg").write_bytes(b"")
    # then decodes the PNG: the kernel it loaded must be the one decoding calls (image data inflates to bytes,
    # a read-only array), not a second signature (a writable array: 0.54 s more to compile on an empty cache)
    probe = ("import sys; from pathlib import Path; from dlcli.data.image_files import check_files; "
             "from dlcli.data.plain_png import plain_png; "
             "from dlcli.kernels.png import unfilter_rows; files = [Path(p) for p in sys.argv[1:]]; "
             "check_files(files, 2, False); loaded = len(unfilter_rows.signatures); "
             "[plain_png(f.read_bytes(), 4, 4, 'rgb') for f in files if f.suffix == '.png']; "
             "print(loaded, len(unfilter_rows.signatures))")
    loaded = [subprocess.run([sys.executable, "-c", probe, *map(str, files)], capture_output=True, text=True,
                             check=True).stdout.strip() for files in ([tmp_path / "a.png"], [tmp_path / "b.jpg"])]
    assert loaded == ["1 1", "0 0"]  # a folder of JPEGs compiles nothing it will not use
