"""The simple_rnn, lstm and gru ops: gradients to input, kernels and bias, with masks, reversal and dropout."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from dlcli import ops
from dlcli.ops.recurrent import RecurrentOptions
from dlcli.tensor import Tensor
from tests.gradcheck import check_op_gradients

N, T, F, U = 2, 5, 3, 4  # odd sizes, so a transposed axis cannot hide
rng = np.random.default_rng(21)
# row 0 holds data at every step; row 1 is right-padded and has a hole, so a state is carried across a gap
MASK = np.array([[True] * 5, [True, False, True, False, False]])
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _keep(count: int, width: int, rate: float = 0.4) -> np.ndarray:
    """Inverted-dropout masks (count, N, width), fixed for every pass of a gradient check."""
    return (rng.random((count, N, width)) >= rate) / (1 - rate)


def _joined(outputs: Tensor | tuple[Tensor, ...]) -> Tensor:
    """An op's outputs flattened per sequence and joined, so a gradient check weighs each with its own weights."""
    parts = outputs if isinstance(outputs, tuple) else (outputs,)
    return ops.concatenate([ops.reshape(t, (N, -1)) for t in parts], axis=1)


def _case(cell: str, bias: bool = True, mask: np.ndarray | None = None, input_dropout: int = 0,
          recurrent_dropout: bool = False, initial: bool = False, return_state: bool = False,
          **options: Any) -> tuple[Callable[..., Tensor], list[np.ndarray]]:
    k = GATES[cell]
    reset_after = options.get("reset_after", True)
    inputs = [rng.normal(size=(N, T, F)), rng.normal(size=(F, k * U)) * 0.6, rng.normal(size=(U, k * U)) * 0.6]
    if bias:
        inputs.append(rng.normal(size=(2, k * U) if cell == "gru" and reset_after else (k * U,)) * 0.3)
    opts = RecurrentOptions(**options)
    extra = {"mask": mask, "input_dropout": _keep(input_dropout, F) if input_dropout else None,
             "recurrent_dropout": _keep(k, U) if recurrent_dropout else None}
    if return_state:
        extra["return_state"] = True
    op = getattr(ops, cell)
    if not initial:
        return (lambda *t: _joined(op(*t, options=opts, **extra))), inputs
    states = 2 if cell == "lstm" else 1
    given = len(inputs)
    inputs += [rng.normal(size=(N, U)) * 0.8 for _ in range(states)]
    return (lambda *t: _joined(op(*t[:given], options=opts, initial_state=t[given:], **extra))), inputs


CASES = {
    "simple_rnn": _case("simple_rnn"),
    "simple_rnn_sequences_masked_relu": _case("simple_rnn", mask=MASK, return_sequences=True, activation="relu"),
    "simple_rnn_reverse_dropout_sigmoid": _case("simple_rnn", reverse=True, input_dropout=1, recurrent_dropout=True,
                                                activation="sigmoid"),
    "simple_rnn_no_bias_linear": _case("simple_rnn", bias=False, return_sequences=True, activation="linear"),
    "lstm": _case("lstm"),
    "lstm_sequences": _case("lstm", return_sequences=True),
    "lstm_masked": _case("lstm", mask=MASK),
    "lstm_masked_sequences_zero_output": _case("lstm", mask=MASK, return_sequences=True, zero_output_for_mask=True),
    "lstm_reverse_masked_sequences": _case("lstm", mask=MASK, return_sequences=True, reverse=True),
    "lstm_dropout_one_input_mask": _case("lstm", input_dropout=1, return_sequences=True),
    "lstm_dropout_per_gate": _case("lstm", input_dropout=4, recurrent_dropout=True, mask=MASK),
    "lstm_no_bias_relu_tanh_gates": _case("lstm", bias=False, activation="relu", recurrent_activation="tanh"),
    "gru": _case("gru"),
    "gru_sequences_masked": _case("gru", mask=MASK, return_sequences=True),
    "gru_reverse_dropout": _case("gru", reverse=True, input_dropout=3, recurrent_dropout=True),
    "gru_reset_before": _case("gru", reset_after=False, return_sequences=True),
    "gru_reset_before_masked_dropout": _case("gru", reset_after=False, mask=MASK, input_dropout=3,
                                             recurrent_dropout=True, reverse=True),
    "gru_no_bias_tanh_gates_linear": _case("gru", bias=False, recurrent_activation="tanh", activation="linear"),
    # initial states (a decoder started from an encoder's), and the final states as outputs of their own
    "simple_rnn_initial_state_masked": _case("simple_rnn", initial=True, mask=MASK, return_sequences=True),
    "simple_rnn_initial_state_reverse_no_bias": _case("simple_rnn", initial=True, bias=False, reverse=True),
    "lstm_initial_state": _case("lstm", initial=True),
    "lstm_initial_state_masked_dropout": _case("lstm", initial=True, mask=MASK, input_dropout=4,
                                               recurrent_dropout=True, return_sequences=True),
    "lstm_return_state": _case("lstm", return_state=True),
    "lstm_return_state_sequences_masked_initial": _case("lstm", return_state=True, initial=True, mask=MASK,
                                                        return_sequences=True),
    "lstm_return_state_reverse_no_bias": _case("lstm", return_state=True, bias=False, reverse=True, mask=MASK),
    "simple_rnn_return_state_sequences_masked": _case("simple_rnn", return_state=True, mask=MASK,
                                                      return_sequences=True),
    "gru_return_state_reverse_initial": _case("gru", return_state=True, initial=True, reverse=True),
    "gru_initial_state": _case("gru", initial=True, return_sequences=True),
    "gru_initial_state_reset_before_masked": _case("gru", initial=True, reset_after=False, mask=MASK),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recurrent_op_gradient_matches_finite_differences(name: str) -> None:
    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_masked_steps_carry_the_state_and_output_it_unless_zeroed() -> None:
    fn, (x, kernel, recurrent, bias) = _case("lstm")
    opts = RecurrentOptions(return_sequences=True)
    args = [Tensor(a) for a in (x, kernel, recurrent, bias)]
    carried = ops.lstm(*args, options=opts, mask=MASK).data
    np.testing.assert_array_equal(carried[1, 1], carried[1, 0])  # step 1 masked: the output of step 0 again
    np.testing.assert_array_equal(carried[1, 4], carried[1, 2])
    zeroed = ops.lstm(*args, options=RecurrentOptions(return_sequences=True, zero_output_for_mask=True),
                      mask=MASK).data
    assert not zeroed[1, [1, 3, 4]].any()
    np.testing.assert_array_equal(zeroed[1, [0, 2]], carried[1, [0, 2]])
    last = ops.lstm(*args, mask=MASK).data
    np.testing.assert_array_equal(last, carried[:, -1])


def test_reverse_runs_from_the_last_valid_step_and_keeps_input_order() -> None:
    _, (x, kernel, recurrent, bias) = _case("gru")
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    args = [Tensor(a) for a in (kernel, recurrent, bias)]
    backward = ops.gru(Tensor(x), *args, options=RecurrentOptions(return_sequences=True, reverse=True),
                       mask=mask).data
    # sequence 1 holds 3 steps: running backward over them equals running forward over them reversed
    flipped = ops.gru(Tensor(np.ascontiguousarray(x[1:, 2::-1])), *args,
                      options=RecurrentOptions(return_sequences=True)).data
    np.testing.assert_allclose(backward[1, :3], flipped[0, ::-1], rtol=1e-12)
    last = ops.gru(Tensor(x), *args, options=RecurrentOptions(reverse=True), mask=mask).data
    np.testing.assert_array_equal(last, backward[:, 0])


def test_float32_stays_float32_and_matches_float64() -> None:
    _, inputs = _case("lstm", return_sequences=True)
    out64 = ops.lstm(*[Tensor(a) for a in inputs], options=RecurrentOptions(return_sequences=True)).data
    tensors = [Tensor(a.astype(np.float32), requires_grad=True) for a in inputs]
    out32 = ops.lstm(*tensors, options=RecurrentOptions(return_sequences=True))
    out32.backward(np.ones(out32.shape, np.float32))
    assert out32.dtype == np.float32 and all(t.grad.dtype == np.float32 for t in tensors)
    # float32 runs the rational tanh (3.5e-7 from the true one); float64 runs NumPy's
    np.testing.assert_allclose(out32.data, out64, rtol=1e-5, atol=2e-6)


def test_a_mask_of_another_shape_is_refused() -> None:
    _, inputs = _case("simple_rnn")
    with pytest.raises(ValueError, match=r"mask of shape \(2, 4\)"):
        ops.simple_rnn(*[Tensor(a) for a in inputs], mask=MASK[:, :4])


def test_an_initial_state_of_zeros_is_no_initial_state_and_the_final_states_are_outputs() -> None:
    fn, inputs = _case("lstm", mask=MASK, return_sequences=True)
    args = [Tensor(a) for a in inputs]
    opts = RecurrentOptions(return_sequences=True)
    plain = ops.lstm(*args, options=opts, mask=MASK).data
    zeros = [Tensor(np.zeros((N, U))), Tensor(np.zeros((N, U)))]
    np.testing.assert_array_equal(ops.lstm(*args, options=opts, mask=MASK, initial_state=zeros).data, plain)
    out, h, c = ops.lstm(*args, options=opts, mask=MASK, return_state=True)
    assert out.shape == (N, T, U) and h.shape == c.shape == (N, U)
    np.testing.assert_array_equal(out.data, plain)
    np.testing.assert_array_equal(h.data, plain[:, -1])  # masked steps carry the state to the end
    # h = o * tanh(c): at the last step, the gate o is in (0, 1), so |h| < |tanh(c)|
    assert (np.abs(h.data) < np.abs(np.tanh(c.data)) + 1e-12).all()


def test_a_later_run_from_the_final_states_continues_the_sequence() -> None:
    """Running steps 0..2, then 3..4 from the states the first part ended in, equals running 0..4 at once."""
    _, (x, kernel, recurrent, bias) = _case("lstm")
    weights = [Tensor(a) for a in (kernel, recurrent, bias)]
    opts = RecurrentOptions(return_sequences=True)
    whole = ops.lstm(Tensor(x), *weights, options=opts).data
    _, h, c = ops.lstm(Tensor(x[:, :3]), *weights, options=RecurrentOptions(), return_state=True)
    rest = ops.lstm(Tensor(x[:, 3:]), *weights, options=opts, initial_state=[h, c])
    np.testing.assert_allclose(rest.data, whole[:, 3:], rtol=1e-12, atol=1e-12)
