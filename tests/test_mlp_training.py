"""A 2-layer MLP on a fixed synthetic problem: every optimizer drives the loss below a threshold in 200 steps."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.layers import Layer, create_layer
from dlcli.losses import create_loss
from dlcli.metrics import create_metric
from dlcli.optimizers import create_optimizer
from dlcli.tensor import Tensor, no_grad


def _xor_blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs at the corners of a square; opposite corners share a class (not linearly separable)."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 4, size=n)
    centers = np.array([[-1, -1], [1, 1], [-1, 1], [1, -1]], np.float32)
    x = centers[corners] + rng.normal(scale=0.25, size=(n, 2)).astype(np.float32)
    return x.astype(np.float32), (corners >= 2).astype(np.int64)


def _mlp(seed: int) -> list[Layer]:
    rng = np.random.default_rng(seed)
    layers = [create_layer({"type": "dense", "units": 16, "activation": "relu", "name": "hidden"}),
              create_layer({"type": "dense", "units": 2, "activation": "softmax", "name": "out"})]
    shape: tuple[int, ...] = (2,)
    for layer in layers:
        shape = layer.build(shape, rng)
    return layers


def _forward(layers: list[Layer], x: np.ndarray) -> Tensor:
    out = Tensor(x)
    for layer in layers:
        out = layer(out, training=True)
    return out


OPTIMIZERS = {
    "sgd": {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    "rmsprop": {"type": "rmsprop", "learning_rate": 0.01},
    "adagrad": {"type": "adagrad", "learning_rate": 0.1},
    "adam": {"type": "adam", "learning_rate": 0.01},
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_mlp_reaches_low_loss_in_200_steps(name: str) -> None:
    x, y = _xor_blobs(512, seed=0)
    layers = _mlp(seed=1)
    params = {t.name: t for layer in layers for t in layer.params.values()}
    optimizer = create_optimizer(OPTIMIZERS[name], params)
    loss_fn = create_loss("sparse_categorical_crossentropy")
    batches = np.random.default_rng(2)
    first_loss = None
    for _ in range(200):
        idx = batches.integers(0, len(x), size=32)
        loss = loss_fn(_forward(layers, x[idx]), y[idx])
        first_loss = first_loss if first_loss is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert loss.dtype == np.float32
    with no_grad():
        probs = _forward(layers, x)
        final = loss_fn(probs, y).item()
    accuracy = create_metric("accuracy", loss="sparse_categorical_crossentropy", output_shape=(2,))
    accuracy.update(probs.data, y)
    assert first_loss > 0.5
    assert final < 0.05, f"{name}: loss {final:.3f} after 200 steps"
    assert accuracy.result() > 0.97
    assert all(p.dtype == np.float32 for p in params.values())
