"""Image files: decoding to the run's size and colour mode as Keras does, and the check that finds every file that
is not a whole image (corrupt, truncated, empty, not an image, a link that loops) before training starts."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.data.images import BadImage, DecodeOptions, decode, probe, resize

# a 5x7 grey image, and Keras 3.15.1's keras.ops.image.resize of it (interpolation="bilinear", antialias off,
# torch backend, whose bilinear is tf.image.resize's: half-pixel centres, edges clamped), recorded once
SOURCE = ((np.arange(5 * 7).reshape(5, 7, 1) * 37) % 256).astype(np.uint8)
KERAS_RESIZED = {
    ((3, 4), False): [[14.875, 79.625, 144.375, 209.125], [19.875, 84.625, 149.375, 214.125],
                      [24.875, 89.625, 154.375, 219.125]],
    ((6, 9), False): [[0.0, 24.6667, 53.4444, 82.2222, 111.0, 139.7778, 168.5556, 197.3333, 222.0],
                      [2.25, 26.9167, 55.6944, 84.4722, 113.25, 142.0278, 170.8056, 199.5833, 224.25],
                      [4.75, 29.4167, 58.1944, 86.9722, 115.75, 144.5278, 173.3056, 202.0833, 226.75],
                      [7.25, 31.9167, 60.6944, 89.4722, 118.25, 147.0278, 175.8056, 204.5833, 229.25],
                      [9.75, 34.4167, 63.1944, 91.9722, 120.75, 149.5278, 178.3056, 207.0833, 231.75],
                      [12.0, 36.6667, 65.4444, 94.2222, 123.0, 151.7778, 180.5556, 209.3333, 234.0]],
    ((4, 4), True): [[42.0, 88.25, 134.5, 180.75], [45.75, 92.0, 138.25, 184.5], [49.5, 95.75, 142.0, 188.25],
                     [53.25, 99.5, 145.75, 192.0]],
    ((2, 6), True): [[6.0833, 49.25, 92.4167, 135.5833, 178.75, 221.9167],
                     [9.0833, 52.25, 95.4167, 138.5833, 181.75, 224.9167]],
}


@pytest.mark.parametrize(("size", "crop"), list(KERAS_RESIZED))
def test_bilinear_resize_and_crop_match_keras_within_the_rounding_to_uint8(tmp_path: Path, size: tuple[int, int],
                                                                            crop: bool) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(SOURCE[:, :, 0], "L").save(path)
    decoded = decode(path, DecodeOptions(*size, color_mode="grayscale", crop_to_aspect_ratio=crop))
    assert decoded.dtype == np.uint8 and decoded.shape == (*size, 1)
    expected = np.array(KERAS_RESIZED[(size, crop)])
    assert np.abs(decoded[:, :, 0] - expected).max() <= 0.5 + 1e-3  # uint8: rounded to the nearest integer
    assert np.array_equal(decoded[:, :, 0], np.rint(expected))


def test_nearest_takes_tf_half_pixel_neighbours_and_the_same_size_is_untouched() -> None:
    image = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    # tf.image.resize(method="nearest"): source index floor((out + 0.5) * in / out), by hand
    assert np.array_equal(resize(image, 3, 2, "nearest"), image[[1, 3, 5]][:, [1, 3]])
    assert np.array_equal(resize(image, 4, 8, "nearest"), image[[0, 2, 3, 5]][:, [0, 0, 1, 1, 2, 2, 3, 3]])
    assert np.array_equal(resize(image, 6, 4, "bilinear"), image)


def _save(path: Path, pixels: np.ndarray, mode: str | None = None, **options: object) -> Path:
    Image.fromarray(pixels, mode).save(path, **options)
    return path


def test_every_mode_and_format_decodes_to_the_asked_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 77, np.uint8)], axis=2)
    files = {"rgb.png": _save(tmp_path / "rgb.png", rgb), "rgba.png": _save(tmp_path / "rgba.png", rgba),
             "grey.bmp": _save(tmp_path / "grey.bmp", rgb[:, :, 0]),
             "palette.gif": _save(tmp_path / "palette.gif", rgb),
             "photo.jpg": _save(tmp_path / "photo.jpg", rgb, quality=95),
             "lossless.webp": _save(tmp_path / "lossless.webp", rgb, lossless=True)}
    grey16 = tmp_path / "grey16.png"
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) << 8) | 0x7F).save(grey16)  # mode I;16
    as_rgb = {name: decode(path, DecodeOptions(6, 5)) for name, path in files.items()}
    assert all(image.shape == (6, 5, 3) and image.dtype == np.uint8 for image in as_rgb.values())
    assert np.array_equal(as_rgb["rgb.png"], rgb) and np.array_equal(as_rgb["lossless.webp"], rgb)
    assert np.array_equal(as_rgb["rgba.png"], rgb)  # alpha dropped, as Keras' rgb mode drops it
    assert np.array_equal(as_rgb["grey.bmp"], np.repeat(rgb[:, :, :1], 3, axis=2))
    assert np.array_equal(as_rgb["photo.jpg"], np.asarray(Image.open(files["photo.jpg"])))  # libjpeg's pixels
    assert np.array_equal(as_rgb["palette.gif"], np.asarray(Image.open(files["palette.gif"]).convert("RGB")))
    assert decode(files["rgb.png"], DecodeOptions(6, 5, "rgba"))[:, :, 3].min() == 255  # opaque alpha added
    assert np.array_equal(decode(files["rgba.png"], DecodeOptions(6, 5, "rgba")), rgba)
    grey = decode(files["rgb.png"], DecodeOptions(6, 5, "grayscale"))
    luma = rgb.astype(float) @ [0.299, 0.587, 0.114]  # ITU-R 601-2, Pillow's and libjpeg's grey
    assert grey.shape == (6, 5, 1) and np.abs(grey[:, :, 0] - luma).max() <= 1
    # 16-bit grey keeps its high byte (TensorFlow's decoders reduce it the same way)
    assert np.array_equal(decode(grey16, DecodeOptions(6, 5, "grayscale"))[:, :, 0], rgb[:, :, 0])


def test_a_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 4, 3), value, np.uint8)) for value in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert np.all(decode(tmp_path / "anim.gif", DecodeOptions(4, 4, "grayscale")) == 10)


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_check_passes_whole_images_and_names_what_is_wrong_with_the_others(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    whole = _png_bytes(pixels)
    (tmp_path / "good.png").write_bytes(whole)
    (tmp_path / "extra.png").write_bytes(whole + b"trailing bytes after IEND" * 100)  # still decodes: accepted
    (tmp_path / "truncated.png").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(jpeg.getvalue()[:-200])
    corrupt = bytearray(whole)
    corrupt[len(whole) // 2:len(whole) // 2 + 20] = bytes(20)  # inside the image data: its chunk checksum fails
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    assert probe(tmp_path / "good.png").mode == "RGB" and probe(tmp_path / "extra.png").width == 16
    problems = {}
    for name in ("truncated.png", "empty.png", "notes.png", "cut.jpg", "corrupt.png", "a.png"):
        with pytest.raises(BadImage) as info:
            probe(tmp_path / name)
        problems[name] = str(info.value)
    assert problems["empty.png"] == "an empty file (0 bytes)"
    assert problems["notes.png"] == "not an image Pillow can read"
    assert problems["a.png"].startswith("is a symbolic link that loops")
    assert problems["truncated.png"] == problems["cut.jpg"] == \
        "truncated: the file ends before its image does (written or copied incompletely)"
    assert problems["corrupt.png"].startswith("damaged (")


def test_decode_reports_a_file_that_went_bad_after_the_check(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    path.write_bytes(_png_bytes(np.zeros((4, 4, 3), np.uint8)))
    os.unlink(path)
    with pytest.raises(BadImage, match="does not exist"):
        decode(path, DecodeOptions(4, 4))
