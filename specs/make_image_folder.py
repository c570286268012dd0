"""Write a registry dataset's images as a folder tree of PNG files, one subfolder per class, as photos sit on disk:

    python specs/make_image_folder.py [--dataset digits] [--out specs/data/digits_images] [--limit N]

digits (bundled, offline: 8x8 pixels valued 0-16, scaled to 0-255) or mnist (28x28, downloaded once, or read
from $DLCLI_DATASETS_MIRROR). Writes OUT/train/<class>/<n>.png and OUT/test/<class>/<n>.png, the dataset's own
train/test split; --limit keeps the first N images of each split. specs/digits_image_folder.toml trains on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from dlcli.data import load_dataset


def as_pixels(images: np.ndarray, dataset: str) -> np.ndarray:
    """uint8 (N, height, width) images: digits' 0-16 values scaled to 0-255, MNIST's as they are."""
    if dataset == "digits":
        return np.rint(images.reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)
    return images.astype(np.uint8)


def write_split(images: np.ndarray, labels: np.ndarray, folder: Path) -> int:
    """Each image as folder/<label>/<index>.png; returns how many were written."""
    for index, (image, label) in enumerate(zip(images, labels)):  # one file each: a script, not a hot path
        target = folder / str(int(label)) / f"{index:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(target)
    return len(images)


def main() -> None:
    """Parse the arguments and write both splits."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--out", type=Path, default=None, help="default: specs/data/<dataset>_images")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N images of each split")
    args = parser.parse_args()
    out = args.out or Path(__file__).resolve().parent / "data" / f"{args.dataset}_images"
    loaded = load_dataset(args.dataset)
    for part, x, y in (("train", loaded.x_train, loaded.y_train), ("test", loaded.x_test, loaded.y_test)):
        count = write_split(as_pixels(x, args.dataset)[:args.limit], y[:args.limit], out / part)
        print(f"{out / part}: {count} images")


if __name__ == "__main__":
    main()
