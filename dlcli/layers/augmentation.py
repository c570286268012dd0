"""Keras' random image augmentation layers: flip, translation, zoom, rotation; active only in training.

Channels-last (batch, height, width, channels). Each batch draws its per-image parameters from the run's
generator (kept from build(), like dropout's, so its state is saved with the checkpoint) in one call, and
translation, zoom and rotation become per-image 2x3 matrices for one affine resampling op. A matrix maps
an output pixel (column x, row y) to the input point it reads, as Keras' transforms do; pixel centres sit at
integer coordinates, so the image centre is ((width - 1) / 2, (height - 1) / 2).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field

from dlcli import ops, registry
from dlcli.layers.base import IMAGE, Layer, LayerSpec, Shape
from dlcli.tensor import Tensor


def _within_one(factor: float | tuple[float, float]) -> float | tuple[float, float]:
    """Keras' check on a factor: every number in [-1, 1]; one message, not one per branch of the union."""
    values = list(factor) if isinstance(factor, tuple) else [factor]
    if any(abs(value) > 1.0 for value in values):
        raise ValueError(f"must be a fraction in [-1, 1] or a pair of them, as in Keras; got "
                         f"{values if isinstance(factor, tuple) else factor}")
    return factor


# Keras' factors: a number f means [-|f|, |f|], a pair [lower, upper] (Keras sorts it)
Factor = Annotated[float | tuple[float, float], AfterValidator(_within_one)]
FillMode = Literal["constant", "reflect", "nearest", "wrap"]
Interpolation = Literal["nearest", "bilinear"]


def _bounds(factor: Factor) -> tuple[float, float]:
    """(lower, upper) of a Keras factor."""
    if isinstance(factor, tuple):
        lower, upper = sorted(factor)
        return lower, upper
    return -abs(factor), abs(factor)


class ImageAugmentation(Layer):
    """Base of the random image layers: takes images (height, width, channels), keeps the run's generator."""

    input_axes = IMAGE

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        self.rng = rng  # the run's generator: its state is saved with the checkpoint
        return in_shape


def _as_float(x: Tensor) -> Tensor:
    """x itself if it holds floats; integer pixels (raw uint8) as a float32 constant, as Keras casts them."""
    return Tensor(x.data.astype(np.float32)) if x.dtype.kind in "uib" else x


class RandomFlipSpec(LayerSpec):
    """[[model.layers]] type = "random_flip"."""

    type: Literal["random_flip"] = "random_flip"
    mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = Field(
        "horizontal_and_vertical", description="Which flips are drawn: horizontal (left-right), vertical (up-down), "
                                               "or either.")


@registry.layers.register("random_flip", spec=RandomFlipSpec)
class RandomFlip(ImageAugmentation):
    """Flips each image left-right and/or up-down with probability 1/2 in training; identity in inference."""

    spec: RandomFlipSpec

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if not training:
            return x
        draws = self.rng.random((x.shape[0], 2)) < 0.5  # (horizontal, vertical) per image
        horizontal = draws[:, 0] & (self.spec.mode != "vertical")
        vertical = draws[:, 1] & (self.spec.mode != "horizontal")
        return ops.flip_images(_as_float(x), horizontal, vertical)


class AffineAugmentationSpec(LayerSpec):
    """Keys shared by the resampling layers: how points outside the input and between pixels are read."""

    fill_mode: FillMode = Field("reflect", description="What lies outside the input: constant, reflect, nearest, "
                                                       "wrap (Keras' meanings).")
    interpolation: Interpolation = Field("bilinear", description="How pixels between grid points are read.")
    fill_value: float = Field(0.0, description="The value outside the input when fill_mode is constant.")


class AffineAugmentation(ImageAugmentation):
    """Base of the resampling layers: per-image matrices from `_matrices`, then one affine resampling op."""

    spec: AffineAugmentationSpec

    def _matrices(self, count: int, height: int, width: int) -> np.ndarray:  # pragma: no cover - abstract
        """Per-image (count, 2, 3) matrices from output pixel (x, y, 1) to the input point it reads."""
        raise NotImplementedError

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if not training:
            return x
        matrices = self._matrices(x.shape[0], x.shape[1], x.shape[2])
        return ops.affine_resample(_as_float(x), matrices, self.spec.interpolation, self.spec.fill_mode,
                                   self.spec.fill_value)


def _affine(scale_x: np.ndarray, scale_y: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray) -> np.ndarray:
    """(N, 2, 3) matrices [[scale_x, 0, shift_x], [0, scale_y, shift_y]]."""
    matrices = np.zeros((len(scale_x), 2, 3))
    matrices[:, 0, 0], matrices[:, 0, 2] = scale_x, shift_x
    matrices[:, 1, 1], matrices[:, 1, 2] = scale_y, shift_y
    return matrices


class RandomTranslationSpec(AffineAugmentationSpec):
    """[[model.layers]] type = "random_translation"."""

    type: Literal["random_translation"] = "random_translation"
    height_factor: Factor = Field(description="Vertical shift as a fraction of the height: f for [-f, f], "
                                              "or [lower, upper]; positive moves the image down.")
    width_factor: Factor = Field(description="Horizontal shift as a fraction of the width: f for [-f, f], "
                                             "or [lower, upper]; positive moves the image right.")


@registry.layers.register("random_translation", spec=RandomTranslationSpec)
class RandomTranslation(AffineAugmentation):
    """Shifts each image by a random fraction of its height and width in training; identity in inference."""

    spec: RandomTranslationSpec

    def _matrices(self, count: int, height: int, width: int) -> np.ndarray:
        (h_low, h_high), (w_low, w_high) = _bounds(self.spec.height_factor), _bounds(self.spec.width_factor)
        shifts = self.rng.uniform((h_low, w_low), (h_high, w_high), size=(count, 2)) * (height, width)
        ones = np.ones(count)
        return _affine(ones, ones, -shifts[:, 1], -shifts[:, 0])  # output (x, y) reads input (x - dx, y - dy)


class RandomZoomSpec(AffineAugmentationSpec):
    """[[model.layers]] type = "random_zoom"."""

    type: Literal["random_zoom"] = "random_zoom"
    height_factor: Factor = Field(description="Vertical zoom: f for [-f, f], or [lower, upper]; positive zooms "
                                              "out (0.2: the image shrinks to 1/1.2), negative zooms in.")
    width_factor: Factor | None = Field(None, description="Horizontal zoom, as height_factor; unset keeps the "
                                                          "aspect ratio (the height's zoom on both axes).")


@registry.layers.register("random_zoom", spec=RandomZoomSpec)
class RandomZoom(AffineAugmentation):
    """Zooms each image in or out about its centre by a random factor in training; identity in inference."""

    spec: RandomZoomSpec

    def _matrices(self, count: int, height: int, width: int) -> np.ndarray:
        # Keras: an output pixel reads the input at centre + (1 + factor) * (pixel - centre), so factor > 0
        # spreads the output over more of the input (zoom out) and factor < 0 over less (zoom in)
        bounds = [_bounds(self.spec.height_factor)]
        if self.spec.width_factor is not None:
            bounds.append(_bounds(self.spec.width_factor))
        lows, highs = np.array(bounds).T
        zooms = 1.0 + self.rng.uniform(lows, highs, size=(count, len(bounds)))
        zoom_y, zoom_x = zooms[:, 0], zooms[:, -1]  # one column: the same zoom on both axes
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        return _affine(zoom_x, zoom_y, centre_x * (1.0 - zoom_x), centre_y * (1.0 - zoom_y))


class RandomRotationSpec(AffineAugmentationSpec):
    """[[model.layers]] type = "random_rotation"."""

    type: Literal["random_rotation"] = "random_rotation"
    factor: Factor = Field(description="Angle as a fraction of a full turn: f for [-f, f], or [lower, upper]; "
                                       "positive turns counter-clockwise.")


@registry.layers.register("random_rotation", spec=RandomRotationSpec)
class RandomRotation(AffineAugmentation):
    """Rotates each image about its centre by a random angle in training; identity in inference."""

    spec: RandomRotationSpec

    def _matrices(self, count: int, height: int, width: int) -> np.ndarray:
        low, high = _bounds(self.spec.factor)
        angles = self.rng.uniform(low, high, size=count) * (2 * np.pi)
        cos, sin = np.cos(angles), np.sin(angles)
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        # the input point is the output pixel turned by +angle about the centre; rows grow downwards, so the
        # picture turns counter-clockwise on screen (Keras' get_rotation_matrix)
        matrices = np.empty((count, 2, 3))
        matrices[:, 0, 0], matrices[:, 0, 1] = cos, -sin
        matrices[:, 1, 0], matrices[:, 1, 1] = sin, cos
        matrices[:, 0, 2] = centre_x - cos * centre_x + sin * centre_y
        matrices[:, 1, 2] = centre_y - sin * centre_x - cos * centre_y
        return matrices
