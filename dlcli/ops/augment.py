"""Image augmentation ops on channels-last batches: per-image flips, and affine resampling with its adjoint."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import Array, Op, Tensor

INTERPOLATIONS = ("nearest", "bilinear")
FILL_MODES = ("constant", "reflect", "nearest", "wrap")  # a mode's position is its code in dlcli.kernels.augment


def _flip(a: Array, horizontal: np.ndarray, vertical: np.ndarray) -> Array:
    """A copy of a (N, H, W, C) with the width axis reversed where `horizontal`, the height axis where `vertical`."""
    out = a.copy()
    out[horizontal] = out[horizontal][:, :, ::-1]
    out[vertical] = out[vertical][:, ::-1]
    return out


class FlipImages(Op):
    """Each image reversed along its width and/or height, as its own pair of boolean flags says."""

    def __init__(self, horizontal: np.ndarray, vertical: np.ndarray) -> None:
        self.horizontal, self.vertical = horizontal, vertical

    def forward(self, images: Array) -> Array:
        return _flip(images, self.horizontal, self.vertical)

    def backward(self, d_out: Array) -> tuple[Array]:
        # a flip is a permutation that is its own inverse, so its adjoint is itself
        return (_flip(d_out, self.horizontal, self.vertical),)


class AffineResample(Op):
    """Image n resampled at matrices[n] @ (x, y, 1) for each output pixel (x, y): rotations, shifts, zooms.

    The 2x3 matrices map output coordinates (column, row) to input coordinates, as Keras' transforms do.
    Resampling is linear in the images, so the backward pass is the adjoint kernel: a scatter of d_out
    back to the pixels read, with the same weights.
    """

    def __init__(self, matrices: np.ndarray, interpolation: str, fill_mode: str, fill_value: float) -> None:
        if interpolation not in INTERPOLATIONS or fill_mode not in FILL_MODES:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS} and fill_mode one of {FILL_MODES}; "
                             f"got {interpolation!r}, {fill_mode!r}")
        self.matrices = np.ascontiguousarray(matrices, dtype=np.float64)
        self.bilinear = interpolation == "bilinear"
        self.fill_code = FILL_MODES.index(fill_mode)
        self.fill_value = float(fill_value)

    def forward(self, images: Array) -> Array:
        from dlcli.kernels import augment as kernels  # numba loads on first use, never for `dlcli --help`

        images = np.ascontiguousarray(images)
        if images.ndim != 4 or images.dtype.kind != "f" or self.matrices.shape != (images.shape[0], 2, 3):
            raise ValueError(f"expected float images (N, H, W, C) and matrices (N, 2, 3); got {images.dtype} "
                             f"{images.shape} and {self.matrices.shape}")
        self.shape = images.shape
        out = np.empty_like(images)
        kernels.affine_resample(images, self.matrices, self.fill_code, self.bilinear, self.fill_value, out)
        return out

    def backward(self, d_out: Array) -> tuple[Array]:
        from dlcli.kernels import augment as kernels

        d_images = np.zeros(self.shape, d_out.dtype)
        kernels.affine_resample_adjoint(np.ascontiguousarray(d_out), self.matrices, self.fill_code, self.bilinear,
                                        d_images)
        return (d_images,)


def flip_images(images: Tensor, horizontal: np.ndarray, vertical: np.ndarray) -> Tensor:
    """Channels-last images (N, H, W, C), image n reversed along width if horizontal[n], height if vertical[n]."""
    return FlipImages.apply(images, horizontal=np.asarray(horizontal, bool), vertical=np.asarray(vertical, bool))


def affine_resample(images: Tensor, matrices: np.ndarray, interpolation: str = "bilinear",
                    fill_mode: str = "reflect", fill_value: float = 0.0) -> Tensor:
    """Channels-last images (N, H, W, C), each output pixel (x, y) of image n read at matrices[n] @ (x, y, 1).

    interpolation is nearest or bilinear; fill_mode (constant, reflect, nearest, wrap) says what lies outside.
    """
    return AffineResample.apply(images, matrices=matrices, interpolation=interpolation, fill_mode=fill_mode,
                                fill_value=fill_value)
