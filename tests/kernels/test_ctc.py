"""CTC kernels against plain NumPy versions: every alignment enumerated, a probability-space forward-backward,
a dictionary prefix beam search and a textbook edit distance."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from dlcli.kernels import ctc as kernels
from dlcli.kernels import ctc_decoding


def collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """The labelling of an alignment: repeats merged, then blanks dropped."""
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return tuple(c for c in merged if c != blank)


def labelling_probabilities(probs: np.ndarray, blank: int) -> dict[tuple[int, ...], float]:
    """p(labelling) for every labelling, by summing the probability of every one of the C^T alignments."""
    totals: dict[tuple[int, ...], float] = defaultdict(float)
    steps, classes = probs.shape
    for path in itertools.product(range(classes), repeat=steps):
        totals[collapse(path, blank)] += float(np.prod(probs[np.arange(steps), path]))
    return totals


def forward_backward(probs: np.ndarray, labels: list[int], blank: int) -> tuple[float, np.ndarray]:
    """(-log p(labels), gradient wrt the logits) by Graves' recursions in probability space, without rescaling."""
    steps, classes = probs.shape
    ext = [blank] + [v for label in labels for v in (label, blank)]
    width = len(ext)

    def allowed(s: int) -> list[int]:  # the states a path may come from at s
        skip = s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]
        return [s] + ([s - 1] if s >= 1 else []) + ([s - 2] if skip else [])

    alpha, beta = np.zeros((steps, width)), np.zeros((steps, width))
    alpha[0, :2] = probs[0, ext[:2]]
    for t in range(1, steps):
        for s in range(width):
            alpha[t, s] = sum(alpha[t - 1, r] for r in allowed(s)) * probs[t, ext[s]]
    beta[-1, -2:] = probs[-1, ext[-2:]]
    for t in range(steps - 2, -1, -1):
        for s in range(width):
            beta[t, s] = sum(beta[t + 1, n] for n in range(width) if s in allowed(n)) * probs[t, ext[s]]
    likelihood = alpha[-1, -1] + (alpha[-1, -2] if width > 1 else 0.0)
    grad = probs.copy()
    for s in range(width):
        grad[:, ext[s]] -= alpha[:, s] * beta[:, s] / probs[:, ext[s]] / likelihood
    return -np.log(likelihood), grad


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _run_loss(logits: np.ndarray, labels: list[list[int]], lengths: list[int], blank: int):
    batch, steps, classes = logits.shape
    padded = np.full((batch, max(map(len, labels)) or 1), -1, np.int64)
    for b, row in enumerate(labels):
        padded[b, :len(row)] = row
    nll, grad = np.empty(batch), np.empty_like(logits)
    kernels.ctc_loss(logits, padded, np.array(lengths, np.int64), np.array([len(r) for r in labels], np.int64),
                     blank, nll, grad)
    return nll, grad


# (labels of each sequence, input lengths, blank), T = 5, C = 4
LOSS_CASES = {
    "distinct": ([[0, 1], [2, 0, 1]], [5, 5], 3),
    "repeats": ([[1, 1], [2, 2, 2]], [5, 5], 3),
    "empty and short input": ([[], [0, 2]], [4, 3], 3),
    "blank first": ([[1, 3, 3], [2]], [5, 2], 0),
}


@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_ctc_loss_kernel_matches_every_alignment_enumerated(case: str) -> None:
    labels, lengths, blank = LOSS_CASES[case]
    logits = np.random.default_rng(3).normal(size=(len(labels), 5, 4))
    nll, grad = _run_loss(logits, labels, lengths, blank)
    for b, (row, steps) in enumerate(zip(labels, lengths)):
        probs = _softmax(logits[b, :steps])
        p = labelling_probabilities(probs, blank)[tuple(row)]
        assert nll[b] == pytest.approx(-np.log(p), rel=1e-12)
        expected_nll, expected_grad = forward_backward(probs, row, blank)
        assert expected_nll == pytest.approx(-np.log(p), rel=1e-12)
        np.testing.assert_allclose(grad[b, :steps], expected_grad, atol=1e-12)
        np.testing.assert_array_equal(grad[b, steps:], 0.0)


def test_scaled_and_log_space_recursions_agree() -> None:
    rng = np.random.default_rng(9)
    labels = np.array([1, 1, 0, 2, 2])
    for length in range(6):
        logits = rng.normal(scale=3.0, size=(12, 4))
        probs = _softmax(logits)
        scaled_grad, log_grad = np.empty_like(probs), np.empty_like(probs)
        scaled = kernels._scaled_sequence(probs, labels, length, 3, scaled_grad, True)
        in_log_space = kernels._log_space_sequence(np.log(probs), labels, length, 3, log_grad, True)
        assert scaled == pytest.approx(in_log_space, rel=1e-12)
        np.testing.assert_allclose(scaled_grad, log_grad, atol=1e-12)


def test_probabilities_that_underflow_fall_back_to_log_space() -> None:
    # label [0], blank 2; step 1 gives the only classes a path may use, 0 and the blank, e^-800 each: every
    # alignment (0 0 _ and 0 _ _) costs 800 there, which float64 probabilities cannot hold
    logits = np.array([[[0.0, -1000.0, -1000.0], [-800.0, 0.0, -800.0], [-1000.0, -1000.0, 0.0]]])
    nll, grad = _run_loss(logits, [[0]], [3], 2)
    assert nll[0] == pytest.approx(800 - np.log(2), rel=1e-12)
    np.testing.assert_allclose(grad[0], [[0, 0, 0], [-0.5, 1, -0.5], [0, 0, 0]], atol=1e-12)


def test_only_the_sequences_that_underflow_are_redone_in_log_space() -> None:
    # the underflowing sequence of the test above between two ordinary ones (T = 3, C = 3, blank 2): it alone
    # takes the log-space kernel, and its neighbours keep their probability-space loss and gradient
    underflow = [[0.0, -1000.0, -1000.0], [-800.0, 0.0, -800.0], [-1000.0, -1000.0, 0.0]]
    ordinary = np.random.default_rng(5).normal(size=(2, 3, 3))
    logits = np.stack([ordinary[0], underflow, ordinary[1]])
    nll, grad = _run_loss(logits, [[1], [0], [0, 1]], [3, 3, 3], 2)
    assert nll[1] == pytest.approx(800 - np.log(2), rel=1e-12)
    np.testing.assert_allclose(grad[1], [[0, 0, 0], [-0.5, 1, -0.5], [0, 0, 0]], atol=1e-12)
    for b, labels in ((0, [1]), (2, [0, 1])):
        expected_nll, expected_grad = forward_backward(_softmax(ordinary[b // 2]), labels, 2)
        assert nll[b] == pytest.approx(expected_nll, rel=1e-12)
        np.testing.assert_allclose(grad[b], expected_grad, atol=1e-12)


def test_an_ordinary_batch_never_compiles_the_log_space_kernel() -> None:
    # compile only what a run needs: the log-space recursions are rare, and cost 0.8 s to compile
    script = """
import numpy as np
from dlcli.kernels import ctc
logits = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
nll, grad = np.empty(2), np.empty_like(logits)
ctc.ctc_loss(logits, np.array([[0, 1], [1, -1]]), np.array([4, 4]), np.array([2, 1]), 2, nll, grad)
assert np.isfinite(nll).all(), nll
print(len(ctc.ctc_loss_rows.signatures), len(ctc.ctc_loss_log_space_rows.signatures))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "0"]


def test_ctc_loss_kernel_gives_inf_where_no_alignment_fits() -> None:
    nll, grad = _run_loss(np.zeros((2, 4, 3)), [[0, 0, 0], [0, 1]], [4, 1], 2)  # 0 0 0 needs 5 steps
    assert np.isposinf(nll).all() and not grad.any()


def test_ctc_loss_kernel_without_gradient_leaves_the_loss_alone() -> None:
    logits = np.random.default_rng(4).normal(size=(2, 5, 4)).astype(np.float32)
    nll, _ = _run_loss(logits.astype(np.float64), [[0, 1], [2, 2]], [5, 5], 3)
    alone = np.empty(2)
    kernels.ctc_loss(logits, np.array([[0, 1], [2, 2]]), np.array([5, 5]), np.array([2, 2]), 3,
                     alone, np.empty((2, 0, 0), np.float32))
    np.testing.assert_allclose(alone, nll, rtol=1e-6)


def prefix_beam_search(log_probs: np.ndarray, blank: int, beam_width: int) -> tuple[int, ...]:
    """Prefix beam search with dictionaries: prefix -> (log p ending in blank, log p ending in its last label)."""
    beams = {(): (0.0, -np.inf)}
    for step in log_probs:
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-np.inf, -np.inf])
        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            grown[prefix][0] = np.logaddexp(grown[prefix][0], total + step[blank])
            if prefix:
                grown[prefix][1] = np.logaddexp(grown[prefix][1], p_label + step[prefix[-1]])
            for c in range(len(step)):
                if c != blank:
                    source = p_blank if prefix and c == prefix[-1] else total
                    grown[prefix + (c,)][1] = np.logaddexp(grown[prefix + (c,)][1], source + step[c])
        ranked = sorted(grown.items(), key=lambda item: -np.logaddexp(*item[1]))
        beams = {prefix: tuple(p) for prefix, p in ranked[:beam_width]}
    return max(beams, key=lambda prefix: np.logaddexp(*beams[prefix]))


def _beam_search(log_probs: np.ndarray, lengths: np.ndarray, blank: int, beam_width: int) -> list[tuple[int, ...]]:
    out, out_lengths = np.full(log_probs.shape[:2], -1, np.int64), np.empty(len(log_probs), np.int64)
    ctc_decoding.ctc_beam_search(log_probs, lengths, blank, beam_width, out, out_lengths)
    return [tuple(row[:n]) for row, n in zip(out.tolist(), out_lengths)]


@pytest.mark.parametrize("beam_width", [1, 2, 4])
def test_beam_search_kernel_matches_a_dictionary_version(beam_width: int) -> None:
    rng = np.random.default_rng(5)
    # peaked random distributions, so that repeats, blanks and merges all happen
    log_probs = np.log(_softmax(rng.normal(scale=2.0, size=(40, 9, 4))))
    lengths = rng.integers(0, 10, size=40)
    found = _beam_search(log_probs, lengths, 3, beam_width)
    for b in range(40):
        assert found[b] == prefix_beam_search(log_probs[b, :lengths[b]], 3, beam_width), b


def test_wide_beam_search_finds_the_most_probable_labelling() -> None:
    rng = np.random.default_rng(6)
    probs = _softmax(rng.normal(size=(30, 5, 3)))
    found = _beam_search(np.log(probs), np.full(30, 5), 2, beam_width=64)  # wider than all 2^5 - 1 prefixes
    for b in range(30):
        totals = labelling_probabilities(probs[b], 2)
        assert found[b] == max(totals, key=totals.get), b


def levenshtein(a: list[int], b: list[int]) -> int:
    """The textbook full-table dynamic programme."""
    table = np.zeros((len(a) + 1, len(b) + 1), np.int64)
    table[:, 0], table[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        table[i, j] = min(table[i - 1, j] + 1, table[i, j - 1] + 1, table[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    return int(table[-1, -1])


def test_edit_distance_kernel_matches_the_full_table() -> None:
    rng = np.random.default_rng(8)
    first, second = rng.integers(0, 3, size=(200, 7)), rng.integers(0, 3, size=(200, 5))
    first_lengths, second_lengths = rng.integers(0, 8, size=200), rng.integers(0, 6, size=200)
    out = np.empty(200, np.int64)
    ctc_decoding.edit_distances(first, first_lengths, second, second_lengths, out)
    for b in range(200):
        assert out[b] == levenshtein(list(first[b, :first_lengths[b]]), list(second[b, :second_lengths[b]])), b
    assert levenshtein([1, 2, 3], [1, 3]) == 1 and levenshtein([], [4, 4]) == 2  # the reference itself
