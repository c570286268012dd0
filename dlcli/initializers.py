"""Weight initializers with Keras' formulas, all drawing from the generator they are given (seeded runs)."""

from __future__ import annotations

import math
import os

import numpy as np

from dlcli import registry
from dlcli.errors import WeightTooLargeError

Shape = tuple[int, ...]
# Keras divides by the std of a unit normal truncated to [-2, 2], so the truncated draw has the intended std.
_TRUNCATED_STD = 0.87962566103423978


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them: a conv kernel (..., in, out) multiplies by its receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _truncated_normal(rng: np.random.Generator, shape: Shape, std: float) -> np.ndarray:
    """Normal draws with any value beyond two standard deviations drawn again."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():  # each round redraws ~4.6% of what is left: a handful of rounds
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * std).astype(np.float32)


def _uniform(rng: np.random.Generator, shape: Shape, limit: float) -> np.ndarray:
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


@registry.initializers.register("glorot_uniform")
def glorot_uniform(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (Keras' default for kernels)."""
    fan_in, fan_out = fans(shape)
    return _uniform(rng, shape, math.sqrt(6.0 / (fan_in + fan_out)))


@registry.initializers.register("glorot_normal")
def glorot_normal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Truncated normal with std sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return _truncated_normal(rng, shape, math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD)


@registry.initializers.register("he_uniform")
def he_uniform(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Uniform in +-sqrt(6 / fan_in)."""
    return _uniform(rng, shape, math.sqrt(6.0 / fans(shape)[0]))


@registry.initializers.register("he_normal")
def he_normal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Truncated normal with std sqrt(2 / fan_in)."""
    return _truncated_normal(rng, shape, math.sqrt(2.0 / fans(shape)[0]) / _TRUNCATED_STD)


@registry.initializers.register("lecun_normal")
def lecun_normal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Truncated normal with std sqrt(1 / fan_in)."""
    return _truncated_normal(rng, shape, math.sqrt(1.0 / fans(shape)[0]) / _TRUNCATED_STD)


@registry.initializers.register("orthogonal")
def orthogonal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """A (semi-)orthogonal matrix from the QR decomposition of a normal draw, reshaped to `shape`."""
    rows, cols = math.prod(shape[:-1]) if len(shape) > 1 else 1, shape[-1]
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # makes the draw uniform over orthogonal matrices
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(np.float32)


@registry.initializers.register("uniform", aliases=("random_uniform",))
def uniform(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Uniform in +-0.05 (Keras' RandomUniform defaults; the embedding layer's default)."""
    return _uniform(rng, shape, 0.05)


@registry.initializers.register("zeros")
def zeros(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """All zeros (Keras' default for biases)."""
    return np.zeros(shape, np.float32)


@registry.initializers.register("ones")
def ones(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """All ones."""
    return np.ones(shape, np.float32)


def initialize(name: str, rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Draw a float32 array of `shape` with the initializer registered as `name`.

    A shape too large for this machine's memory is a SpecError before anything is allocated
    (`units = 1000000000000` must not start a 4 TB allocation).
    """
    needed = math.prod(shape) * 4
    if needed > physical_memory():
        raise WeightTooLargeError(f"a weight of shape {list(shape)} would need {needed / 2**30:,.1f} GiB, more than "
                                  f"this machine's {physical_memory() / 2**30:,.1f} GiB of memory")
    return registry.initializers.get(name)(rng, tuple(shape))


def physical_memory() -> int:
    """Bytes of RAM on this machine (a large default where the OS cannot say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40
