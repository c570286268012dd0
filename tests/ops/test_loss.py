"""The CTC loss op: PyTorch's losses and gradients, impossible alignments, padding, and a gradient check.

(The fused crossentropy ops are checked through the loss table in tests/test_losses.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from dlcli import ops
from dlcli.tensor import Tensor, no_grad

# batch 3, T = 8, C = 5: repeats (1 1, 3 3 3), a sequence that needs every one of its 6 steps, and three
# input lengths; logits rounded to one decimal so they can be written here
LOGITS = np.array([
    [[-1.2, 0.4, -2.8, 2.1, 1.0], [-0.4, -0.5, 0.5, -0.4, -0.3], [1.1, 0.8, -0.1, -0.1, 0.2],
     [-0.9, -0.6, 0.8, -0.2, -2.1], [-0.7, 1.0, -0.3, -0.2, 1.0], [2.7, -1.1, 2.0, -1.8, 0.3],
     [-1.8, 2.0, 1.3, 1.7, -1.3], [1.0, -0.8, -0.7, 0.8, 1.3]],
    [[0.3, -0.9, -1.2, 2.2, 0.9], [1.1, 3.3, -1.2, 3.8, 4.7], [2.4, 1.2, -1.0, 1.5, -0.7],
     [-0.0, -0.4, 0.4, 1.9, -0.8], [-1.5, -1.5, -1.5, -2.1, -1.4], [1.9, -0.9, 0.4, -1.8, 0.3],
     [-2.6, -1.0, 3.4, -0.9, 1.7], [0.7, -0.2, -1.0, 1.9, -0.3]],
    [[2.3, -1.1, 0.1, 0.7, 0.6], [-1.9, -1.0, -0.3, -1.3, 1.0], [0.9, -2.9, -2.7, -1.9, 0.2],
     [3.0, -0.6, 0.4, -1.6, -1.6], [-2.9, -0.0, 1.4, -0.5, 2.1], [0.3, -0.1, 0.8, 0.7, 1.7],
     [-1.2, -3.4, 0.2, -0.9, -0.0], [2.5, -1.7, 1.1, 1.4, 0.7]],
])
LABELS = np.array([[1, 1, 2, -1], [0, 3, 3, 3], [2, -1, -1, -1]])
INPUT_LENGTHS = np.array([8, 6, 7])

# torch.nn.functional.ctc_loss(log_softmax(LOGITS) time-major, labels, INPUT_LENGTHS, label lengths, blank,
# reduction="none") in float64, and the gradient of its sum with respect to LOGITS; torch 2.13.0+cpu
TORCH_LOSS_BLANK_4 = [9.294978967324834, 13.388703171862922, 7.878622644456482]
TORCH_LOSS_BLANK_0 = [9.369166087353232, 11.288703171862922, 10.303846111591714]  # labels + 1
TORCH_GRAD_BLANK_4 = np.array([
    [[0.023645, -0.534399, 0.004774, 0.641073, -0.135093], [0.154569, -0.274742, 0.380178, 0.154569, -0.414573],
     [0.363666, -0.247921, 0.109534, 0.109534, -0.334813], [0.098631, -0.583842, 0.438542, 0.198619, -0.151951],
     [0.066276, -0.099161, -0.071539, 0.10927, -0.004846], [0.616986, -0.035002, -0.48826, 0.006854, -0.100578],
     [0.009741, 0.38365, -0.676069, 0.322564, -0.039885], [0.284368, 0.047006, -0.107476, 0.232821, -0.456718]],
    [[-0.900322, 0.030022, 0.022241, 0.666434, 0.181625], [0.016233, 0.146502, 0.001627, -0.758459, 0.594096],
     [0.559852, 0.168624, 0.018684, 0.227619, -0.974779], [0.097112, 0.065096, 0.144874, -0.350718, 0.043635],
     [0.21487, 0.21487, 0.21487, 0.117923, -0.762532], [0.662006, 0.040257, 0.147714, -0.983633, 0.133657],
     [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
    [[0.654126, 0.02183, 0.026209, 0.132066, -0.834231], [0.0352, 0.086579, 0.13333, 0.064139, -0.319247],
     [0.622243, 0.01392, -0.044725, 0.037839, -0.629277], [0.891503, 0.024359, -0.720963, 0.008961, -0.203861],
     [0.003963, 0.072031, -0.138343, 0.043689, 0.01866], [0.11279, 0.075605, -0.064151, 0.168262, -0.292506],
     [0.101668, 0.011265, 0.212771, 0.137237, -0.462941], [0.0, 0.0, 0.0, 0.0, 0.0]],
])

_rng = np.random.default_rng(11)
# op gradient cases: (function of the tensors, inputs); integer inputs are constants
CASES = {
    "ctc_loss": (lambda z, y: ops.ctc_loss(z, y.data, INPUT_LENGTHS), [LOGITS.copy(), LABELS]),
    "ctc_loss_blank_first": (lambda z, y: ops.ctc_loss(z, y.data, blank=0),
                             [_rng.normal(size=(2, 6, 4)), np.array([[1, 1, 3], [2, -1, -1]])]),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ctc_loss_and_gradient_match_pytorch(dtype: type) -> None:
    z = Tensor(LOGITS.astype(dtype), requires_grad=True)
    loss = ops.ctc_loss(z, LABELS, INPUT_LENGTHS)
    assert loss.dtype == dtype
    loss.sum().backward()
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss.data, TORCH_LOSS_BLANK_4, rtol=tolerance)
    np.testing.assert_allclose(z.grad, TORCH_GRAD_BLANK_4, atol=1e-6)  # the constants have 6 decimals
    assert z.grad.dtype == dtype


def test_ctc_loss_with_the_blank_first_matches_pytorch() -> None:
    loss = ops.ctc_loss(Tensor(LOGITS), np.where(LABELS < 0, -1, LABELS + 1), INPUT_LENGTHS, blank=0)
    np.testing.assert_allclose(loss.data, TORCH_LOSS_BLANK_0, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ctc_loss_gradient_matches_finite_differences(name: str) -> None:
    from tests.gradcheck import check_op_gradients

    fn, inputs = CASES[name]
    check_op_gradients(fn, inputs)


def test_gradient_is_softmax_minus_occupancy_so_each_step_sums_to_zero() -> None:
    z = Tensor(LOGITS, requires_grad=True)
    ops.ctc_loss(z, LABELS, INPUT_LENGTHS).sum().backward()
    np.testing.assert_allclose(z.grad.sum(axis=-1), 0.0, atol=1e-12)


def test_padding_may_sit_anywhere_in_a_label_row() -> None:
    shuffled = np.array([[1, -1, 1, 2], [0, 3, 3, 3], [-1, -1, 2, -1]])
    loss = ops.ctc_loss(Tensor(LOGITS), shuffled, INPUT_LENGTHS)
    np.testing.assert_allclose(loss.data, TORCH_LOSS_BLANK_4, rtol=1e-12)


def test_impossible_alignment_gives_infinite_loss_and_zero_gradient() -> None:
    z = Tensor(LOGITS[:2, :3], requires_grad=True)
    # [1, 1] needs 3 steps (a blank between the repeats) and has 2; [0, 1, 2, 3] needs 4 and has 3
    loss = ops.ctc_loss(z, np.array([[1, 1, -1, -1], [0, 1, 2, 3]]), np.array([2, 3]))
    assert np.isposinf(loss.data).all()  # torch's ctc_loss (zero_infinity=False) gives inf as well
    loss.sum().backward()
    np.testing.assert_array_equal(z.grad, 0.0)


def test_empty_label_sequence_is_all_blanks() -> None:
    log_p = LOGITS[0] - np.log(np.exp(LOGITS[0]).sum(axis=-1, keepdims=True))
    loss = ops.ctc_loss(Tensor(LOGITS[:1]), np.full((1, 3), -1))
    assert loss.data[0] == pytest.approx(-log_p[:, 4].sum(), rel=1e-12)


def test_inference_computes_no_gradient() -> None:
    with no_grad():
        loss = ops.ctc_loss(Tensor(LOGITS, requires_grad=True), LABELS, INPUT_LENGTHS)
    assert loss.op is None
    np.testing.assert_allclose(loss.data, TORCH_LOSS_BLANK_4, rtol=1e-12)
