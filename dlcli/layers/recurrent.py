"""Recurrent layers with Keras' names, defaults and weight layouts: simple_rnn, lstm and gru.

Weights are `<layer>/kernel` (features, k*units), `<layer>/recurrent_kernel` (units, k*units) and `<layer>/bias`
(k*units; gru with reset_after: (2, 3*units)), in Keras' gate order (lstm i, f, c, o; gru z, r, h), so parameter
counts and checkpoints line up with Keras'. In a graph, return_state adds the final states as the node's ports
`<node>.state_h` (and `<node>.state_c` for lstm), and a recurrent node given `inputs = [sequence, h (, c)]`
starts from those states (Keras' initial_state), as an encoder hands its states to a decoder.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Literal

import numpy as np
from pydantic import Field

from dlcli import ops, registry
from dlcli.errors import SpecError
from dlcli.initializers import initialize
from dlcli.layers.base import InitializerName, Layer, LayerSpec, Shape
from dlcli.ops.recurrent import RecurrentOptions
from dlcli.tensor import Tensor

RecurrentActivation = Literal["tanh", "sigmoid", "relu", "linear"]


class RecurrentSpec(LayerSpec):
    """Keys shared by simple_rnn, lstm and gru."""

    units: int = Field(gt=0, description="Width of the state and of the output.")
    activation: RecurrentActivation = Field("tanh", description="The state's activation (lstm: the cell input's and "
                                                                "the output's; gru: the candidate's).")
    use_bias: bool = Field(True, description="Add learned biases.")
    return_sequences: bool = Field(False, description="Output every step (batch, steps, units), not only the last "
                                                      "one.")
    return_state: bool = Field(False, description="Also give the final states, as the ports <node>.state_h "
                                                  "(and <node>.state_c for lstm) of a graph node.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of input features dropped in training.")
    recurrent_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the state dropped in training.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How the input weights start.")
    recurrent_initializer: InitializerName = Field("orthogonal", description="How the recurrent weights start.")
    bias_initializer: InitializerName = Field("zeros", description="How the biases start.")


class SimpleRNNSpec(RecurrentSpec):
    """type = "simple_rnn"."""

    type: Literal["simple_rnn"] = "simple_rnn"


class LSTMSpec(RecurrentSpec):
    """type = "lstm"."""

    type: Literal["lstm"] = "lstm"
    recurrent_activation: RecurrentActivation = Field("sigmoid", description="The gates' activation.")
    unit_forget_bias: bool = Field(True, description="Start the forget gate's bias at 1 (Jozefowicz et al.).")


class GRUSpec(RecurrentSpec):
    """type = "gru"."""

    type: Literal["gru"] = "gru"
    recurrent_activation: RecurrentActivation = Field("sigmoid", description="The gates' activation.")
    reset_after: bool = Field(True, description="Reset gate after the recurrent product (Keras' default, "
                                                "PyTorch's GRU); bias (2, 3*units).")


class Recurrent(Layer):
    """Shared by simple_rnn, lstm and gru: weights, dropout masks, masking and the input checks."""

    spec: RecurrentSpec
    input_axes = ("timesteps", "features")
    gates: ClassVar[int]
    op: ClassVar[Callable[..., Tensor | tuple[Tensor, ...]]]
    STATE_NAMES: ClassVar[tuple[str, ...]] = ("state_h",)
    ports_option = "return_state"

    def __init__(self, spec: RecurrentSpec, name: str | None = None) -> None:
        super().__init__(spec, name)
        self.reverse = False  # set by bidirectional for its backward layer: run from the last step
        self.zero_output_for_mask = False  # set by bidirectional with return_sequences, as Keras does

    def connect(self, in_shapes: list[Shape], rng: np.random.Generator) -> Shape:
        """The sequence's shape, then optionally one (units,) shape per initial state."""
        out_shape = super().connect(in_shapes, rng)
        if len(in_shapes) > 1:
            self.check_states(in_shapes[1:])
        return out_shape

    def build(self, in_shape: Shape, rng: np.random.Generator) -> Shape:
        steps, features = in_shape
        spec, width = self.spec, self.gates * self.spec.units
        self.kernel = self.add_param("kernel", initialize(spec.kernel_initializer, rng, (features, width)))
        # contiguous: optimizers update weights in place (orthogonal draws (units, k*units) as a transpose)
        self.recurrent_kernel = self.add_param("recurrent_kernel", np.ascontiguousarray(
            initialize(spec.recurrent_initializer, rng, (spec.units, width))))
        self.bias = self.add_param("bias", self._initial_bias(rng)) if spec.use_bias else None
        self.rng = rng  # the run's generator, for dropout masks: its state is saved with the checkpoint
        return (steps, spec.units) if spec.return_sequences else (spec.units,)

    def _initial_bias(self, rng: np.random.Generator) -> np.ndarray:
        return initialize(self.spec.bias_initializer, rng, (self.gates * self.spec.units,))

    def extra_outputs(self) -> dict[str, Shape]:
        if not self.spec.return_state:
            return {}
        return {port: (self.spec.units,) for port in self.STATE_NAMES}

    def extra_inputs(self) -> int:
        return len(self.STATE_NAMES)

    def check_states(self, shapes: list[Shape]) -> None:
        """SpecError unless the initial states given are one (units,) vector for each state."""
        names = " and ".join(self.STATE_NAMES)
        if len(shapes) != len(self.STATE_NAMES):
            raise SpecError(f"{self.key}.inputs: {self.spec.type} takes its sequence, then optionally its initial "
                            f"{names} ({1 + len(self.STATE_NAMES)} inputs), got {1 + len(shapes)} inputs")
        for port, shape in zip(self.STATE_NAMES, shapes):
            if tuple(shape) != (self.spec.units,):
                raise SpecError(f"{self.key}.inputs: the initial {port} must have shape [{self.spec.units}] (the "
                                f"layer's units), got {list(shape)}")

    def options(self) -> RecurrentOptions:
        """How the op runs this layer."""
        spec = self.spec
        return RecurrentOptions(activation=spec.activation,
                                recurrent_activation=getattr(spec, "recurrent_activation", "sigmoid"),
                                return_sequences=spec.return_sequences, reverse=self.reverse,
                                zero_output_for_mask=self.zero_output_for_mask,
                                reset_after=getattr(spec, "reset_after", True))

    def __call__(self, x: Tensor, *initial_state: Tensor, training: bool = False) -> Tensor | tuple[Tensor, ...]:
        """The sequence x, started from `initial_state` (h, and c for lstm) when given; with return_state,
        (output, final h (, final c))."""
        input_dropout, recurrent_dropout = self._dropout_masks(x.shape[0], x.shape[2]) if training else (None, None)
        result = type(self).op(x, self.kernel, self.recurrent_kernel, self.bias, self.options(), mask=x.mask,
                               input_dropout=input_dropout, recurrent_dropout=recurrent_dropout,
                               initial_state=initial_state, return_state=self.spec.return_state)
        out = result[0] if isinstance(result, tuple) else result
        if self.spec.return_sequences:
            out.mask = x.mask
        return result

    def _dropout_masks(self, batch: int, features: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Keras' masks: one per sequence, the same at every step. With recurrent dropout Keras switches to one
        mask per gate, for the state and for the input alike; otherwise one input mask serves every gate."""
        spec = self.spec
        per_gate = self.gates if spec.recurrent_dropout > 0 else 1
        inputs = self._keep((per_gate, batch, features), spec.dropout) if spec.dropout > 0 else None
        state = self._keep((self.gates, batch, spec.units), spec.recurrent_dropout) \
            if spec.recurrent_dropout > 0 else None
        return inputs, state

    def _keep(self, shape: tuple[int, ...], rate: float) -> np.ndarray:
        """Inverted-dropout keep-masks: 0, or 1 / (1 - rate) with probability 1 - rate."""
        keep = self.rng.random(shape, dtype=np.float32) >= rate
        return keep * np.asarray(1.0 / (1.0 - rate), self.kernel.dtype)


@registry.layers.register("simple_rnn", spec=SimpleRNNSpec)
class SimpleRNN(Recurrent):
    """Fully connected recurrent layer: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    spec: SimpleRNNSpec
    gates = 1
    op = staticmethod(ops.simple_rnn)


@registry.layers.register("lstm", spec=LSTMSpec)
class LSTM(Recurrent):
    """Long short-term memory (Hochreiter 1997), Keras' weight layout and gate order i, f, c, o."""

    spec: LSTMSpec
    gates = 4
    STATE_NAMES = ("state_h", "state_c")
    op = staticmethod(ops.lstm)

    def _initial_bias(self, rng: np.random.Generator) -> np.ndarray:
        units, init = self.spec.units, self.spec.bias_initializer
        if not self.spec.unit_forget_bias:
            return initialize(init, rng, (4 * units,))
        # Keras: the bias initializer for i, then ones for f, then the initializer for c and o
        return np.concatenate([initialize(init, rng, (units,)), np.ones(units, np.float32),
                               initialize(init, rng, (2 * units,))]).astype(np.float32)


@registry.layers.register("gru", spec=GRUSpec)
class GRU(Recurrent):
    """Gated recurrent unit (Cho et al. 2014), Keras' weight layout and gate order z, r, h."""

    spec: GRUSpec
    gates = 3
    op = staticmethod(ops.gru)

    def _initial_bias(self, rng: np.random.Generator) -> np.ndarray:
        shape = (2, 3 * self.spec.units) if self.spec.reset_after else (3 * self.spec.units,)
        return initialize(self.spec.bias_initializer, rng, shape)
