"""The hand-written NumPy MLP of the benchmarks' NumPy references (mlp_step.py, tabular_loop.py): x -> Dense(relu)
-> Dense, its backward pass and Keras' RMSprop update, into preallocated buffers, as a NumPy user writes them. The
caller turns the logits into the output gradient its loss gives."""

from __future__ import annotations

import numpy as np


def forward(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
            b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the hidden layer's relu output, the logits)."""
    h = x @ w1
    h += b1
    np.maximum(h, 0, out=h)
    z = h @ w2
    z += b2
    return h, z


def backward(x: np.ndarray, h: np.ndarray, w2: np.ndarray, d: np.ndarray, grads: list[np.ndarray]) -> None:
    """The gradients of w1, b1, w2, b2 into `grads`, from `d`, the loss's gradient at the logits."""
    np.matmul(h.T, d, out=grads[2])
    np.sum(d, axis=0, out=grads[3])
    dh = d @ w2.T
    dh *= h > 0
    np.matmul(x.T, dh, out=grads[0])
    np.sum(dh, axis=0, out=grads[1])


def rmsprop_update(params: list[np.ndarray], grads: list[np.ndarray], velocities: list[np.ndarray],
                   scratch: list[np.ndarray], lr: float, rho: float, eps: float) -> None:
    """velocity = rho * velocity + (1 - rho) * g^2; param -= lr * g / sqrt(velocity + eps), in place."""
    for param, grad, velocity, tmp in zip(params, grads, velocities, scratch):
        velocity *= rho
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - rho
        velocity += tmp
        np.add(velocity, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(grad, tmp, out=tmp)
        tmp *= lr
        param -= tmp
