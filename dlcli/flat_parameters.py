"""Parameters and gradients as the update kernels take them: flat rows (flat_gradient, zero_row), and every
parameter in one flat array (FlatParameters), so that a dense step is one kernel call."""

from __future__ import annotations

import numpy as np

from dlcli.tensor import SparseRows, Tensor


class FlatParameters:
    """Every parameter as a slice of one flat array, each slot likewise, and one flat gradient buffer, so that a
    step with a dense gradient for every parameter is one kernel call, not one per parameter: the update is
    elementwise, so the bits are the same. The tiny MLP's RMSprop step (4 parameters) took 6.2 us of Python
    and dispatch per step that way (measured here). Parameters keep their shapes as views of the flat array, and
    every writer of weights (checkpoint loading, callbacks, MPI) copies into the live arrays in place; one that
    replaced an array (p.data = other) is copied back in at the next step.
    """

    def __init__(self, params: dict[str, Tensor], slots: dict[str, dict[str, np.ndarray]], dtype: np.dtype) -> None:
        total = sum(p.data.size for p in params.values())
        slot_names = next(iter(slots.values())).keys() if slots else ()
        self.weights, self.grads = np.empty(total, dtype), np.empty(total, dtype)
        self.slots = {slot: np.empty(total, dtype) for slot in slot_names}
        self.parts: list[tuple[Tensor, slice]] = []
        offset = 0
        for name, p in params.items():
            part = slice(offset, offset + p.data.size)
            offset += p.data.size
            self.parts.append((p, part))
            self._take(p, part)
            for slot, values in self.slots.items():
                values[part] = slots[name][slot]
                slots[name][slot] = values[part]
        self.views = [p.data for p, _ in self.parts]

    @classmethod
    def adopt(cls, params: dict[str, Tensor], slots: dict[str, dict[str, np.ndarray]]) -> FlatParameters | None:
        """Move params into one flat array when they share a dtype (gradient checks mix float64 in: not then)."""
        dtypes = {p.data.dtype for p in params.values()}
        return cls(params, slots, dtypes.pop()) if len(dtypes) == 1 else None

    def _take(self, param: Tensor, part: slice) -> None:
        self.weights[part] = param.data.reshape(-1)
        param.data = self.weights[part].reshape(param.data.shape)

    def gather_gradients(self, params: dict[str, Tensor]) -> bool:
        """Copy every gradient into the flat buffer; False (nothing done) if one is missing or sparse."""
        flat = []  # plain loops: a generator or comprehension each costs about a microsecond a step here
        for p, _ in self.parts:
            g = p.grad
            if type(g) is not np.ndarray:
                return False
            flat.append(g.reshape(-1))
        for index, (p, part) in enumerate(self.parts):
            if p.data is not self.views[index]:  # replaced, not written in place: take the new values
                self._take(p, part)
                self.views[index] = p.data
        np.concatenate(flat, out=self.grads)
        return True


EMPTY = np.zeros(0, np.float32)  # stands in for a slot a configuration does not use
WHOLE = np.zeros(1, np.int64)  # a dense gradient is one row spanning its whole parameter


def zero_row(w: np.ndarray, g: np.ndarray, rows: np.ndarray, every_row: bool) -> np.ndarray:
    """The row of zeros a kernel reads for the rows a sparse gradient skips under Keras' rule (every_row), in g's
    dtype; empty when the pass visits only given rows (a dense gradient, or the lazy rule).

    Reading zeros through the same loop body as real rows, rather than a second loop with the formula written
    for g = 0, keeps the two bit for bit alike; a branch per entry instead kept LLVM from vectorizing (20x
    slower measured), and so did a helper function called from two loops.
    """
    if rows is WHOLE or not every_row or w.size == 0:
        return EMPTY if g.dtype == EMPTY.dtype else np.zeros(0, g.dtype)
    width = g.size // rows.size if rows.size else w.size
    return np.zeros(width if w.size // width > rows.size else 0, g.dtype)


def flat_gradient(name: str, param: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(flat gradient rows, the parameter rows they update) for the kernels, in the parameter's dtype.

    A SparseRows gradient is coalesced first: a row listed twice must be updated once, with the sum.
    """
    grad = param.grad
    if not isinstance(grad, SparseRows):
        return np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1), WHOLE
    grad = grad.coalesced()
    rows = grad.indices
    # the kernels index without bounds checks; coalesced rows are sorted, so the ends bound them all
    if grad.shape != param.shape or (rows.size and (rows[0] < 0 or rows[-1] >= param.shape[0])):
        raise ValueError(f"sparse gradient of {name}: {grad!r} does not fit the parameter's shape {param.shape}")
    return np.ascontiguousarray(grad.values, dtype=param.dtype).reshape(-1), rows
