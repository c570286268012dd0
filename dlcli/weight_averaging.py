"""Two options every optimizer takes wrap its update, as in Keras 3's BaseOptimizer.apply: `weight_decay`
multiplies each weight that has a gradient by (1 - weight_decay * learning_rate) before the update
(decoupled, Loshchilov & Hutter; an embedding table decays as a whole under Keras' rule, and in the rows its
gradient holds under the lazy rule, which changes nothing else), except
weights whose full name a pattern of `exclude_from_weight_decay` finds; `use_ema` keeps an exponential
moving average of every weight after the update (the slot `average`: the weights themselves at the first
step, then ema_momentum * average + (1 - ema_momentum) * weight), and with `ema_overwrite_frequency` copies
it into the weights every that many steps. The run loop (train/fit.py) copies the averages into the model
when training ends, as Keras' fit does (finalize_variable_values).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from dlcli.flat_parameters import WHOLE


class DecayAndAverage:
    """The steps every Optimizer takes around its update: weight decay before, the moving average after (the
    optimizer holds spec, params, slots, iterations and _flat, the flat view of each weight)."""

    spec: Any
    params: dict[str, Any]
    slots: dict[str, dict[str, np.ndarray]]
    iterations: int
    _flat: dict[str, np.ndarray]
    _every_row: bool

    def _decays(self, name: str) -> bool:
        """Whether weight decay applies to the weight `name` (Keras' exclude_from_weight_decay, on full names)."""
        return not any(re.search(pattern, name) for pattern in self.spec.exclude_from_weight_decay)

    def _decay_weights(self, grads: dict[str, Any], lr: float) -> None:
        """weight *= 1 - weight_decay * lr for each weight with a gradient that decays, before its update."""
        if not self.spec.weight_decay:
            return
        factor = 1.0 - self.spec.weight_decay * lr  # in float64, then cast, as Keras' torch backend multiplies
        for name, (_, rows) in grads.items():
            if not self._decays(name):
                continue
            flat = self._flat[name]
            if rows is WHOLE or self._every_row:
                flat *= np.asarray(factor, flat.dtype)
            else:  # the lazy rule: only the rows the sparse gradient holds change
                table = flat.reshape(self.params[name].shape[0], -1)
                table[rows] *= np.asarray(factor, flat.dtype)

    def _average_weights(self) -> None:
        """use_ema: each weight's moving average after the update; every ema_overwrite_frequency steps, the weights
        become their averages."""
        if not self.spec.use_ema:
            return
        momentum = np.float32(self.spec.ema_momentum) if self.iterations > 0 else np.float32(0.0)
        overwrite = self.spec.ema_overwrite_frequency and (self.iterations + 1) % self.spec.ema_overwrite_frequency == 0
        for name, slots in self.slots.items():
            average, weight = slots["average"], self._flat[name]
            average *= momentum.astype(average.dtype)
            average += (np.float32(1.0) - momentum).astype(average.dtype) * weight
            if overwrite:
                weight[...] = average

    def finalize_weights(self) -> None:
        """The weights become their moving averages (with use_ema; Keras' finalize_variable_values, which fit
        calls once training ends). Nothing changes without use_ema."""
        if self.spec.use_ema:
            for name, slots in self.slots.items():
                self._flat[name][...] = slots["average"]
