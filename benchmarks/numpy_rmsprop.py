"""The hand-written NumPy RMSprop update of the benchmarks' NumPy references (mlp_step.py, tabular_loop.py):
Keras' formula, into preallocated buffers, one parameter at a time, as a NumPy user writes it."""

from __future__ import annotations

import numpy as np


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
