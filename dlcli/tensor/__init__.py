"""The tensor and its tape: arrays that remember how they were made."""

from dlcli.tensor.sparse import SparseRows
from dlcli.tensor.tape import Op, is_grad_enabled, no_grad
from dlcli.tensor.tensor import Array, Tensor

__all__ = ["Array", "Op", "SparseRows", "Tensor", "is_grad_enabled", "no_grad"]
