"""Write the synthetic shapes set specs/segmentation_toy.toml segments (specs/data/), from a seed.

    python specs/make_segmentation_data.py [--out specs/data] [--seed 0] [--images 2000]

shapes_{train,test}.npz: x, 32x32 grey images (float32 in [0, 1], one channel) of one to three discs and
squares of random size, place and brightness over a noisy background; y, the same 32x32 as class ids per
pixel: 0 background, 1 disc, 2 square (a later shape covers an earlier one), as ch. 9's Oxford pets masks
give each pixel its class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SIZE = 32


def shapes(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """count images and their per-pixel class masks."""
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    x = rng.uniform(0.0, 0.35, (count, SIZE, SIZE)).astype(np.float32)
    y = np.zeros((count, SIZE, SIZE), np.int64)
    for image in range(count):  # a data generator, not the hot path: one image at a time is clear
        for _ in range(rng.integers(1, 4)):
            kind, radius = rng.integers(1, 3), rng.integers(3, 9)
            centre_r, centre_c = rng.integers(radius, SIZE - radius, 2)
            if kind == 1:
                inside = (rows - centre_r) ** 2 + (columns - centre_c) ** 2 <= radius ** 2
            else:
                inside = (np.abs(rows - centre_r) <= radius) & (np.abs(columns - centre_c) <= radius)
            x[image][inside] = rng.uniform(0.5, 1.0)
            y[image][inside] = kind
    x += rng.normal(0, 0.05, x.shape).astype(np.float32)
    return {"x": np.clip(x, 0, 1)[..., None], "y": y}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    arrays = shapes(np.random.default_rng(args.seed), args.images)
    cut = int(args.images * 0.8)
    for split, part in (("train", slice(0, cut)), ("test", slice(cut, args.images))):
        path = args.out / f"shapes_{split}.npz"
        np.savez_compressed(path, **{k: v[part] for k, v in arrays.items()})
        print(f"wrote {path} ({len(arrays['y'][part])} images)")


if __name__ == "__main__":
    main()
