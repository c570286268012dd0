"""Tensor: a NumPy array with a gradient and the tape node that produced it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dlcli.tensor.tape import Op

Array = np.ndarray


class Tensor:
    """An n-d array that records the op that made it, so `backward()` can send gradients to its inputs.

    The array keeps the dtype it is given (loaders and initializers produce float32). Operators (+, @, ...)
    and methods such as `.sum()` are bound by `dlcli.ops`, so this module needs no op.
    """

    __slots__ = ("data", "grad", "requires_grad", "op", "output_index", "name", "mask", "__weakref__")
    # `array * tensor` must reach Tensor.__rmul__ rather than make NumPy build an object array
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None) -> None:
        if not isinstance(data, np.ndarray):
            # NumPy gives scalars (np.float64, ...) for ops on 0-d arrays: keep their dtype; Python numbers
            # and lists become float32, the hot path's dtype
            data = np.asarray(data) if isinstance(data, np.generic) else np.asarray(data, dtype=np.float32)
        self.data: Array = data
        self.grad: Array | None = None
        self.requires_grad = requires_grad
        self.op: Op | None = None
        self.output_index = 0  # which of its op's outputs this is (an op may have several)
        self.name = name
        # (batch, time) booleans, True where a step holds data: set by embedding(mask_zero=True), read by
        # recurrent layers so padded steps change nothing (Keras' mask propagation)
        self.mask: Array | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """The number of elements."""
        return self.data.size

    def numpy(self) -> Array:
        """The underlying array (not a copy)."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        return float(self.data)

    def detach(self) -> Tensor:
        """The same array, cut from the graph."""
        return Tensor(self.data)

    def backward(self, grad: Array | None = None, retain_graph: bool = False) -> None:
        """Send gradients from this tensor to every tensor it depends on that requires one."""
        from dlcli.tensor.tape import run_backward

        run_backward(self, grad, retain_graph)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{flag})"
