"""Recurrent ops: simple_rnn, lstm and gru over whole sequences, Keras' weight layouts, on the time-loop kernels.

x (N, T, F) is projected for all steps at once, x @ kernel as one GEMM; the time loop (one GEMM per step with
the recurrent kernel, then the bias and the gates) is one Numba call; so is backpropagation through time, after
which d_kernel, d_recurrent_kernel and d_x are again one GEMM each. Arrays are time-major inside, so each step's
rows are contiguous.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np

from dlcli import activations
from dlcli.tensor import Array, Op, Tensor


_FORWARD_LOOPS = contextvars.ContextVar("dlcli_recurrent_forward_loops", default=True)


@contextlib.contextmanager
def forward_loops_skipped() -> Iterator[None]:
    """Within the block the recurrent ops do all their forward work except the time loop: the states hold
    whatever np.empty gave, and the backward then runs on arrays of exactly the run's types. For compiling the
    backward kernels alone (train/precompile_process.py: another process compiles the forward ones meanwhile);
    the numbers are meaningless."""
    token = _FORWARD_LOOPS.set(False)
    try:
        yield
    finally:
        _FORWARD_LOOPS.reset(token)


@dataclass(frozen=True)
class RecurrentOptions:
    """How a recurrent op runs; masks and dropout, which change every batch, are passed beside it."""

    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"  # lstm and gru gates
    return_sequences: bool = False
    reverse: bool = False  # from the last step to the first; outputs stay in input order
    zero_output_for_mask: bool = False  # masked steps output zeros rather than the carried-over state
    reset_after: bool = True  # gru: the reset gate after the recurrent product (PyTorch's GRU)


class Recurrent(Op):
    """A recurrent layer over a sequence: x (N, T, F), kernel (F, kU), recurrent_kernel (U, kU), bias.

    mask (N, T) is True where a step holds data. input_dropout is one (N, F) mask per gate, or one for all,
    applied to every step's input; recurrent_dropout one (N, U) mask per gate, applied to the state before its
    product with that gate's block of the recurrent kernel (both already scaled by 1 / (1 - rate)).

    Inputs: x, kernel, recurrent_kernel, then the bias when has_bias, then `initial_states` (N, U) arrays (h, and
    c for lstm; zeros when not given). Outputs: the output ((N, U), or (N, T, U) with return_sequences), then
    with return_state the final states (N, U): h, and c for lstm, each with its own gradient.
    """

    gates: ClassVar[int]
    states: ClassVar[int] = 1  # the state arrays a step carries over: h (and c for lstm)

    def __init__(self, options: RecurrentOptions, mask: Array | None = None, input_dropout: Array | None = None,
                 recurrent_dropout: Array | None = None, has_bias: bool = True, initial_states: int = 0,
                 return_state: bool = False) -> None:
        self.options, self.mask = options, mask
        self.input_dropout, self.recurrent_dropout = input_dropout, recurrent_dropout
        self.codes = (_kernel_code(options.activation), _kernel_code(options.recurrent_activation))
        if initial_states not in (0, self.states):
            raise ValueError(f"{type(self).__name__} carries {self.states} state array(s): got {initial_states} "
                             "initial states")
        self.has_bias, self.initial_states, self.return_state = has_bias, initial_states, return_state

    def forward(self, x: Array, kernel: Array, recurrent_kernel: Array, *rest: Array) -> Array | tuple[Array, ...]:
        bias = rest[0] if self.has_bias else None
        given = rest[1:] if self.has_bias else rest
        dtype = kernel.dtype
        n, steps, _ = x.shape
        units = recurrent_kernel.shape[0]
        self.x_dtype, self.kernel = x.dtype, kernel
        self.recurrent_kernel = np.ascontiguousarray(recurrent_kernel, dtype)
        self.xt = np.ascontiguousarray(x.transpose(1, 0, 2), dtype)
        self.steps_mask = np.ones((n, steps), bool) if self.mask is None else np.ascontiguousarray(self.mask, bool)
        if self.steps_mask.shape != (n, steps):  # the kernels index it unchecked
            raise ValueError(f"mask of shape {self.steps_mask.shape} for a sequence batch of shape {x.shape}")
        self.dropout = np.empty((0, n, units), dtype) if self.recurrent_dropout is None \
            else np.ascontiguousarray(self.recurrent_dropout, dtype)
        self.input_masks = None if self.input_dropout is None else self.input_dropout.astype(dtype, copy=False)
        # the kernels add the bias in a pass they make anyway; without one they add zeros
        self.bias = np.zeros(self._bias_shape(kernel.shape[1]), dtype) if bias is None \
            else np.ascontiguousarray(bias, dtype)
        self.first = steps if self.options.reverse else 0  # the slot the first step reads
        self.last = 0 if self.options.reverse else steps  # the slot the last step writes
        initial = [np.asarray(state, dtype) for state in given] if given \
            else [np.zeros((n, units), dtype) for _ in range(self.states)]
        for state in initial:
            if state.shape != (n, units):
                raise ValueError(f"an initial state of shape {state.shape} for {n} sequences of {units} units")
        hs = np.empty((steps + 1, n, units), dtype)
        hs[self.first] = initial[0]
        self._recur(self._project(), hs, initial)
        self.hs = hs
        if not self.options.return_sequences:  # the state after the last step processed
            out = hs[self.last].copy()
        else:
            out = self._sequence(hs).transpose(1, 0, 2)
            if self.options.zero_output_for_mask and self.mask is not None:
                out = out * self.steps_mask[:, :, None]
        out = np.ascontiguousarray(out)
        if not self.return_state:
            return out
        final = [hs[self.last]] if self.states == 1 else [hs[self.last], self.cs[self.last]]
        return (out, *(state.copy() for state in final))

    def backward(self, d_out: Array | None, *d_states: Array | None) -> tuple[Array | None, ...]:
        dtype, (n, units) = self.hs.dtype, self.hs.shape[1:]
        d_hs, d_last = np.empty((0, n, units), dtype), np.zeros((n, units), dtype)
        if d_out is not None and self.options.return_sequences:  # a gradient on every step's output
            if self.options.zero_output_for_mask and self.mask is not None:
                d_out = d_out * self.steps_mask[:, :, None]
            d_hs = np.ascontiguousarray(d_out.transpose(1, 0, 2), dtype)
        elif d_out is not None:  # the output is the final state
            d_last += d_out
        d_h, d_c = (*d_states, None, None)[:2]  # the final states' own gradients (return_state)
        if d_h is not None:
            d_last += d_h
        d_cell = np.zeros((n, units), dtype) if d_c is None else np.ascontiguousarray(d_c, dtype)
        d_initial = [np.empty((n, units), dtype) for _ in range(self.states)]
        d_in, d_recurrent_kernel, d_bias = self._bptt(d_hs, d_last, d_cell, d_initial)
        d_x, d_kernel = self._input_grads(d_in)
        grads = (d_x, d_kernel, d_recurrent_kernel, *([d_bias] if self.has_bias else []),
                 *(d_initial if self.initial_states else []))
        return tuple(g if needed else None for g, needed in zip(grads, self.needs_grad))

    # -- shared pieces --------------------------------------------------------------------------------------

    def _bias_shape(self, width: int) -> tuple[int, ...]:
        return (width,)

    def _sequence(self, hs: Array) -> Array:
        """(T, N, U): the state written by the step at each time."""
        return hs[:-1] if self.options.reverse else hs[1:]

    def _previous(self) -> Array:
        """(T, N, U): the state each step read."""
        return self.hs[1:] if self.options.reverse else self.hs[:-1]

    def _groups(self) -> list[tuple[slice, Array | None]]:
        """(columns of the kernel, the input dropout mask they see): one group, or one per gate."""
        masks = self.input_masks
        if masks is None or len(masks) == 1:
            return [(slice(None), None if masks is None else masks[0])]
        width = self.kernel.shape[1] // len(masks)
        return [(slice(g * width, (g + 1) * width), m) for g, m in enumerate(masks)]

    def _project(self) -> Array:
        """(T, N, kU): x @ kernel for every step, in one GEMM (one per gate with per-gate dropout)."""
        xt, kernel = self.xt, self.kernel.astype(self.xt.dtype, copy=False)
        rows, features = xt.shape[0] * xt.shape[1], xt.shape[2]
        xw = np.empty((rows, kernel.shape[1]), xt.dtype)
        for cols, m in self._groups():
            xm = xt if m is None else xt * m
            if cols == slice(None):
                np.matmul(xm.reshape(rows, features), kernel, out=xw)
            else:
                xw[:, cols] = xm.reshape(rows, features) @ kernel[:, cols]
        return xw.reshape(xt.shape[0], xt.shape[1], -1)

    def _input_grads(self, d_in: Array) -> tuple[Array | None, Array | None]:
        """(d_x (N, T, F), d_kernel) from d_in (T, N, kU), the gradient of the projections."""
        xt, kernel = self.xt, self.kernel.astype(self.xt.dtype, copy=False)
        steps, n, features = xt.shape
        d_flat = d_in.reshape(steps * n, -1)
        d_kernel = np.empty(kernel.shape, xt.dtype) if self.needs_grad[1] else None
        d_xt = np.zeros((steps * n, features), xt.dtype) if self.needs_grad[0] else None
        for cols, m in self._groups():
            if d_kernel is not None:
                xm = xt if m is None else xt * m
                d_kernel[:, cols] = xm.reshape(-1, features).T @ d_flat[:, cols]
            if d_xt is not None:
                part = d_flat[:, cols] @ kernel[:, cols].T
                d_xt += part if m is None else (part.reshape(steps, n, features) * m).reshape(steps * n, features)
        d_x = None if d_xt is None else d_xt.reshape(steps, n, features).transpose(1, 0, 2).astype(self.x_dtype)
        return d_x, d_kernel

    def _loop(self, kernel: Array, transposed: bool = False) -> tuple[Array, Array | None, Array | None, Array, bool]:
        """The time loop's shared arguments: (kernel or kernel.T, its (U, U) gate blocks (each transposed)
        for recurrent dropout, the dropout masks, the step mask, reverse). Without recurrent dropout the blocks
        and masks are None, and without masking the step mask, so the kernels compile without the per-gate
        products or the carrying of masked steps (kernels/recurrent.py)."""
        units = kernel.shape[0]
        blocks, dropout = None, None
        if self.dropout.shape[0]:  # gate g's columns kernel[:, g*U:(g+1)*U], or that block's transpose
            blocks = np.ascontiguousarray(kernel.reshape(units, -1, units).transpose((1, 2, 0) if transposed
                                                                                     else (1, 0, 2)))
            dropout = self.dropout
        kernel = np.ascontiguousarray(kernel.T) if transposed else kernel
        return kernel, blocks, dropout, None if self.mask is None else self.steps_mask, self.options.reverse

    def _recurrent_grad(self, d: Array) -> Array | None:
        """d(kernel) for the products h_prev @ kernel whose gradients are d (T, N, kU): one GEMM, or one a gate."""
        if not self.needs_grad[2]:
            return None
        h_prev = self._previous()
        units = h_prev.shape[2]
        flat = h_prev.reshape(-1, units)
        if not self.dropout.shape[0]:
            return flat.T @ d.reshape(-1, d.shape[2])
        out = np.empty((units, d.shape[2]), d.dtype)
        for g in range(d.shape[2] // units):
            masked = (h_prev * self.dropout[g]).reshape(-1, units)
            out[:, g * units:(g + 1) * units] = masked.T @ d[:, :, g * units:(g + 1) * units].reshape(-1, units)
        return out

    @staticmethod
    def _run(kernel: Callable[..., None], *args: object) -> None:
        """Call a time-loop kernel with its per-step GEMMs on one BLAS thread (see dlcli.kernels.blas)."""
        from dlcli.kernels import blas

        with blas.one_thread():
            kernel(*args)

    @classmethod
    def _run_forward(cls, kernel: Callable[..., None], *args: object) -> None:
        """_run for a forward time loop, which forward_loops_skipped leaves out."""
        if _FORWARD_LOOPS.get():
            cls._run(kernel, *args)

    def _recur(self, xw: Array, hs: Array, initial: list[Array]) -> None:  # pragma: no cover - abstract
        """Run the time loop; hs holds the initial h in slot self.first, initial all initial states."""
        raise NotImplementedError

    def _bptt(self, d_hs: Array, d_last: Array, d_cell: Array,
              d_initial: list[Array]) -> tuple[Array, Array | None, Array]:  # pragma: no cover
        """(d of the projections, d_recurrent_kernel, d_bias); d_initial receives the initial states' gradients,
        given d_cell on the final cell state (lstm)."""
        raise NotImplementedError


class SimpleRNN(Recurrent):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    gates = 1

    def _recur(self, xw: Array, hs: Array, initial: list[Array]) -> None:
        from dlcli.kernels import recurrent as kernels

        self._run_forward(kernels.simple_rnn_forward, xw, self.bias, *self._loop(self.recurrent_kernel),
                          self.codes[0], hs)

    def _bptt(self, d_hs: Array, d_last: Array, d_cell: Array,
              d_initial: list[Array]) -> tuple[Array, Array | None, Array]:
        from dlcli.kernels import recurrent as kernels

        dz, d_bias = np.empty_like(self.hs[1:]), np.empty_like(self.bias)
        self._run(kernels.simple_rnn_backward, d_hs, d_last, *self._loop(self.recurrent_kernel, transposed=True),
                  self.codes[0], self.hs, dz, d_initial[0], d_bias)
        return dz, self._recurrent_grad(dz), d_bias


class LSTM(Recurrent):
    """Long short-term memory, Keras' gate order i, f, c, o: h_t = o * activation(c_t)."""

    gates = 4
    states = 2

    def _recur(self, xw: Array, hs: Array, initial: list[Array]) -> None:
        from dlcli.kernels import lstm as kernels

        self.cs, self.act_c = np.empty_like(hs), np.empty_like(hs[1:])
        self.cs[self.first] = initial[1]
        self._run_forward(kernels.lstm_forward, xw, self.bias, *self._loop(self.recurrent_kernel), *self.codes, hs,
                          self.cs, self.act_c)
        self.gate_values = xw  # the kernel turned the projections into the activated gates in place

    def _bptt(self, d_hs: Array, d_last: Array, d_cell: Array,
              d_initial: list[Array]) -> tuple[Array, Array | None, Array]:
        from dlcli.kernels import lstm as kernels

        dz, d_bias = np.empty_like(self.gate_values), np.empty_like(self.bias)
        self._run(kernels.lstm_backward, d_hs, d_last, *self._loop(self.recurrent_kernel, transposed=True),
                  *self.codes, self.gate_values, self.cs, self.act_c, dz, d_cell, *d_initial, d_bias)
        return dz, self._recurrent_grad(dz), d_bias


class GRU(Recurrent):
    """Gated recurrent unit, Keras' gate order z, r, h: h_t = z * h_{t-1} + (1 - z) * candidate.

    reset_after: bias (2, 3U) holds the input and the recurrent bias; otherwise bias (3U,) is the input's only.
    """

    gates = 3

    def _bias_shape(self, width: int) -> tuple[int, ...]:
        return (2, width) if self.options.reset_after else (width,)

    def _split(self) -> tuple[Array, Array | None]:
        """(kernel of the per-step product, kernel_h of the second product when the reset comes first, else None:
        the kernels compile only the variant they are given, kernels/gru.py)."""
        rk, units = self.recurrent_kernel, self.recurrent_kernel.shape[0]
        if self.options.reset_after:
            return rk, None
        return np.ascontiguousarray(rk[:, :2 * units]), np.ascontiguousarray(rk[:, 2 * units:])

    def _recur(self, xw: Array, hs: Array, initial: list[Array]) -> None:
        from dlcli.kernels import gru as kernels

        kernel, kernel_h = self._split()
        if self.options.reset_after:
            input_bias, recurrent_bias = self.bias
        else:
            input_bias, recurrent_bias = self.bias, np.zeros_like(self.bias)
        self.saved = np.empty_like(hs[1:])
        loop = self._loop(kernel)
        self._run_forward(kernels.gru_forward, xw, input_bias, *loop[:3], kernel_h, recurrent_bias, *loop[3:],
                          *self.codes, hs, self.saved)
        self.gate_values = xw

    def _bptt(self, d_hs: Array, d_last: Array, d_cell: Array,
              d_initial: list[Array]) -> tuple[Array, Array | None, Array]:
        from dlcli.kernels import gru as kernels

        kernel, kernel_h = self._split()
        units, inner = kernel.shape
        d_in = np.empty_like(self.gate_values)
        d_rec = np.empty((*d_in.shape[:2], inner), d_in.dtype)
        d_input_bias, d_recurrent_bias = np.empty(3 * units, d_in.dtype), np.empty(inner, d_in.dtype)
        loop = self._loop(kernel, transposed=True)
        kernel_h_t = None if kernel_h is None else np.ascontiguousarray(kernel_h.T)
        self._run(kernels.gru_backward, d_hs, d_last, *loop[:3], kernel_h_t, *loop[3:], *self.codes, self.hs,
                  self.gate_values, self.saved, d_in, d_rec, d_initial[0], d_input_bias, d_recurrent_bias)
        d_kernel = self._recurrent_grad(d_rec)
        if d_kernel is not None and not self.options.reset_after:  # the candidate's block multiplied r * h
            flat = self.saved.reshape(-1, units)
            d_kernel = np.concatenate([d_kernel, flat.T @ d_in[:, :, 2 * units:].reshape(-1, units)], axis=1)
        if not self.options.reset_after:
            return d_in, d_kernel, d_input_bias
        return d_in, d_kernel, np.stack([d_input_bias, d_recurrent_bias])


def _kernel_code(name: str) -> int:
    """The time-loop kernels' code for an activation of the table (linear, relu, tanh, sigmoid have one)."""
    code = activations.get(name).code
    if code is None:
        raise ValueError(f"the recurrent kernels compute linear, relu, tanh or sigmoid, not {name!r}")
    return code


def _recurrent(op: type[Recurrent], x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None,
               options: RecurrentOptions, mask: np.ndarray | None, input_dropout: np.ndarray | None,
               recurrent_dropout: np.ndarray | None, initial_state: Sequence[Tensor],
               return_state: bool) -> Tensor | tuple[Tensor, ...]:
    inputs = (x, kernel, recurrent_kernel) if bias is None else (x, kernel, recurrent_kernel, bias)
    return op.apply(*inputs, *initial_state, options=options, mask=mask, input_dropout=input_dropout,
                    recurrent_dropout=recurrent_dropout, has_bias=bias is not None,
                    initial_states=len(initial_state), return_state=return_state)


def simple_rnn(x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None,
               options: RecurrentOptions = RecurrentOptions(), mask: np.ndarray | None = None,
               input_dropout: np.ndarray | None = None, recurrent_dropout: np.ndarray | None = None,
               initial_state: Sequence[Tensor] = (), return_state: bool = False) -> Tensor | tuple[Tensor, ...]:
    """A simple RNN over x (N, T, F): kernel (F, U), recurrent_kernel (U, U), bias (U,), Keras' layout.

    mask (N, T) is True where a step holds data (masked steps keep the state); input_dropout (1, N, F) and
    recurrent_dropout (1, N, U) are scaled keep-masks used at every step; initial_state: [h0 (N, U)], else zeros.
    Returns (N, U) or (N, T, U); with return_state, (that output, the final h (N, U)).
    """
    return _recurrent(SimpleRNN, x, kernel, recurrent_kernel, bias, options, mask, input_dropout, recurrent_dropout,
                      initial_state, return_state)


def lstm(x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None,
         options: RecurrentOptions = RecurrentOptions(), mask: np.ndarray | None = None,
         input_dropout: np.ndarray | None = None, recurrent_dropout: np.ndarray | None = None,
         initial_state: Sequence[Tensor] = (), return_state: bool = False) -> Tensor | tuple[Tensor, ...]:
    """An LSTM over x (N, T, F): kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,), gates i, f, c, o.

    Masks as for simple_rnn, with one dropout mask per gate (4, N, ...) or, for the input, one for all (1, N, F).
    initial_state: [h0, c0], else zeros. With return_state: (output, the final h, the final cell state c).
    """
    return _recurrent(LSTM, x, kernel, recurrent_kernel, bias, options, mask, input_dropout, recurrent_dropout,
                      initial_state, return_state)


def gru(x: Tensor, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None,
        options: RecurrentOptions = RecurrentOptions(), mask: np.ndarray | None = None,
        input_dropout: np.ndarray | None = None, recurrent_dropout: np.ndarray | None = None,
        initial_state: Sequence[Tensor] = (), return_state: bool = False) -> Tensor | tuple[Tensor, ...]:
    """A GRU over x (N, T, F): kernel (F, 3U), recurrent_kernel (U, 3U), gates z, r, h; bias (2, 3U) with
    options.reset_after (input and recurrent bias, PyTorch's GRU), else (3U,). Masks as for lstm (3 gates);
    initial_state: [h0 (N, U)], else zeros. With return_state: (output, the final h)."""
    return _recurrent(GRU, x, kernel, recurrent_kernel, bias, options, mask, input_dropout, recurrent_dropout,
                      initial_state, return_state)
