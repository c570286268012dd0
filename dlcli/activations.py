"""Activation functions by name, as layers and specs use them (`activation = "relu"`)."""

from __future__ import annotations

from typing import Callable

from dlcli import ops, registry
from dlcli.tensor import Tensor


@registry.activations.register("linear")
def linear(x: Tensor) -> Tensor:
    """Identity: x."""
    return x


@registry.activations.register("relu")
def relu(x: Tensor) -> Tensor:
    """Rectified linear unit: max(x, 0)."""
    return ops.relu(x)


@registry.activations.register("sigmoid")
def sigmoid(x: Tensor) -> Tensor:
    """Logistic function 1 / (1 + e^-x), for binary probabilities."""
    return ops.sigmoid(x)


@registry.activations.register("tanh")
def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent, in (-1, 1)."""
    return ops.tanh(x)


@registry.activations.register("softmax")
def softmax(x: Tensor) -> Tensor:
    """Normalized exponentials over the last axis: class probabilities."""
    return ops.softmax(x, axis=-1)


@registry.activations.register("log_softmax")
def log_softmax(x: Tensor) -> Tensor:
    """Logarithm of softmax over the last axis, computed stably."""
    return ops.log_softmax(x, axis=-1)


def get(name: str) -> Callable[[Tensor], Tensor]:
    """The activation function registered as `name`."""
    return registry.activations.get(name)


def apply(name: str, x: Tensor) -> Tensor:
    """x through the activation registered as `name`."""
    return registry.activations.get(name)(x)
