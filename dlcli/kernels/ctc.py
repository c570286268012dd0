"""Connectionist temporal classification kernels: the loss and its gradient (decoding: kernels/ctc_decoding.py).

CTC (Graves et al., 2006) scores a label sequence l against per-step class probabilities by summing over
every alignment: paths through the extended sequence l' = (blank, l1, blank, l2, ..., blank) of length
2L + 1 that may stay on a symbol, move to the next one, or skip a blank between two different labels.
The forward and backward variables (alpha, beta) run in float64 whatever the input dtype.

The loss runs the recursions in probability space, each step rescaled to sum to 1 (Rabiner's scaling, as
Graves' thesis does): adds and multiplies only, about 8x faster than log space, where every cell costs an
exp and a log1p. The log-likelihood is the sum of the logs of the scales. Scaling cannot save a step
whose reachable probabilities all underflow (logits some 700 apart, a model far off the rails), so such
a sequence is redone in log space, which is exact for any finite logits.

Sequences are independent and each is thousands of scalar steps, so the batch loops run over blocks of
sequences on several threads (nogil kernels, kernels/parts.py); every sequence writes only its own rows of the
outputs. Not prange: the parallel loss took 5.8 s to compile (measured here, empty cache). The small helpers
are plain calls, not inline="always" (Numba inlines those in its own IR and types them again at every call
site): 1 s less to compile, and LLVM inlines them anyway (the same run time, measured). _softmax and
_scaled_recursions, one call site each in the loss, are the other way round: inlined, they are typed once as
before and skip a compilation of their own (the loss's kernels 0.92 -> 0.78 s of CPU on an empty cache, with
the recursions' workspace from the caller, benchmarks/compile_time.py).
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _logaddexp(a: float, b: float) -> float:
    """log(e^a + e^b), exact when either is -inf (np.logaddexp is slower here: it handles NaN and inf+inf)."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _extended_label(labels: np.ndarray, s: int, blank: int) -> int:
    """Symbol s of the extended sequence (blank, l1, blank, l2, ..., blank)."""
    return blank if s % 2 == 0 else labels[s // 2]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _may_skip(labels: np.ndarray, s: int) -> bool:
    """Whether a path may jump from s - 2 to s: s is a label that differs from the label before the blank."""
    return s % 2 == 1 and s >= 2 and labels[s // 2] != labels[s // 2 - 1]


@numba.njit(cache=True, error_model="numpy", inline="always", no_cfunc_wrapper=True)
def _softmax(logits: np.ndarray, out: np.ndarray, log: bool) -> None:
    """out (T, C) float64 = softmax(logits), or log_softmax with `log`, shifted by each step's maximum."""
    for t in range(out.shape[0]):
        top = logits[t, 0]
        for k in range(1, out.shape[1]):
            if logits[t, k] > top:  # max(top, x) exactly, without compiling Numba's max for the dtype
                top = logits[t, k]
        total = 0.0
        for k in range(out.shape[1]):
            out[t, k] = np.exp(logits[t, k] - top)
            total += out[t, k]
        if log:
            shift = top + np.log(total)
            for k in range(out.shape[1]):
                out[t, k] = logits[t, k] - shift
        else:
            for k in range(out.shape[1]):
                out[t, k] /= total


@numba.njit(cache=True, error_model="numpy", inline="always", no_cfunc_wrapper=True)
def _scaled_recursions(probs: np.ndarray, symbols: np.ndarray, skips: np.ndarray, length: int, alpha: np.ndarray,
                       betas: np.ndarray, grad: np.ndarray, want_grad: bool) -> float:
    """-log p(labels | probs) (T, C) by rescaled probability-space recursions; NaN where a scale underflows.

    symbols and skips (at least 2L + 1) are the extended sequence and where a path may skip a blank
    (_extended_label, _may_skip), tabulated by ctc_loss in NumPy: the two helpers compiled as functions of
    their own (0.1-0.15 s on an empty cache) and were called at six sites of the loops. alpha (at least T rows
    of 2L + 1) and betas (2 rows of 2L + 1) are float64 workspaces from the caller: allocations here compiled
    allocators of their own (Numba compiles one per dtype spelling and per caller's flags, nogil included).

    alpha[t, s] is the probability of the path prefixes that emit steps 0..t and stand on s at t, divided
    by the product of the scales so far; beta (two rows, rolled) is the same for the suffixes from t on.
    Both include step t's emission, so alpha * beta / y is proportional to the probability of the paths
    through s at t; normalized over s it is the posterior occupancy, and grad[t] = y - occupancy.
    """
    steps, classes = probs.shape
    width = 2 * length + 1
    for s in range(width):
        alpha[0, s] = 0.0
    alpha[0, 0] = probs[0, symbols[0]]
    if width > 1:
        alpha[0, 1] = probs[0, symbols[1]]
    log_likelihood = 0.0
    for t in range(steps):
        if t > 0:
            for s in range(width):
                total = alpha[t - 1, s]
                if s >= 1:
                    total += alpha[t - 1, s - 1]
                if skips[s]:
                    total += alpha[t - 1, s - 2]
                alpha[t, s] = total * probs[t, symbols[s]]
        scale = 0.0
        for s in range(width):
            scale += alpha[t, s]
        if scale == 0.0:  # every reachable probability underflowed
            return np.nan
        for s in range(width):
            alpha[t, s] /= scale
        log_likelihood += np.log(scale)
    end = alpha[steps - 1, width - 1] + (alpha[steps - 1, width - 2] if width > 1 else 0.0)
    if end == 0.0:
        return np.nan
    log_likelihood += np.log(end)
    if not want_grad:
        return -log_likelihood

    beta, later = betas[0], betas[1]  # every entry written before read
    for t in range(steps - 1, -1, -1):
        scale = 0.0
        for s in range(width):
            if t == steps - 1:
                total = 1.0 if s >= width - 2 else 0.0
            else:
                total = later[s]
                if s + 1 < width:
                    total += later[s + 1]
                if s + 2 < width and skips[s + 2]:
                    total += later[s + 2]
            beta[s] = total * probs[t, symbols[s]]
            scale += beta[s]
        if scale == 0.0:
            return np.nan
        occupied = 0.0
        for s in range(width):
            beta[s] /= scale
            y = probs[t, symbols[s]]
            later[s] = alpha[t, s] * beta[s] / y if y > 0.0 else 0.0  # `later` is free until the swap
            occupied += later[s]
        if occupied == 0.0:
            return np.nan
        for k in range(classes):
            grad[t, k] = probs[t, k]
        for s in range(width):
            grad[t, symbols[s]] -= later[s] / occupied
        beta, later = later, beta
    return -log_likelihood


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _log_space_sequence(log_probs: np.ndarray, labels: np.ndarray, length: int, blank: int, grad: np.ndarray,
                        want_grad: bool) -> float:
    """-log p(labels | log_probs) (T, C) by log-space recursions: slower, but never underflows.

    The same recursions as _scaled_recursions with logaddexp for sums: alpha + beta - log y is the
    log-probability of all paths through s at t, and minus the log-likelihood, the log-occupancy.
    """
    steps, classes = log_probs.shape
    width = 2 * length + 1
    alpha = np.full((steps, width), -np.inf)
    alpha[0, 0] = log_probs[0, blank]
    if width > 1:
        alpha[0, 1] = log_probs[0, labels[0]]
    for t in range(1, steps):
        for s in range(width):
            total = alpha[t - 1, s]
            if s >= 1:
                total = _logaddexp(total, alpha[t - 1, s - 1])
            if _may_skip(labels, s):
                total = _logaddexp(total, alpha[t - 1, s - 2])
            if total != -np.inf:
                alpha[t, s] = total + log_probs[t, _extended_label(labels, s, blank)]
    log_likelihood = alpha[steps - 1, width - 1]
    if width > 1:
        log_likelihood = _logaddexp(log_likelihood, alpha[steps - 1, width - 2])
    if not want_grad:
        return -log_likelihood

    beta, later = np.full(width, -np.inf), np.full(width, -np.inf)
    for t in range(steps - 1, -1, -1):
        for s in range(width):
            if t == steps - 1:
                total = 0.0 if s >= width - 2 else -np.inf
            else:
                total = later[s]
                if s + 1 < width:
                    total = _logaddexp(total, later[s + 1])
                if s + 2 < width and _may_skip(labels, s + 2):
                    total = _logaddexp(total, later[s + 2])
            beta[s] = total + log_probs[t, _extended_label(labels, s, blank)] if total != -np.inf else -np.inf
        for k in range(classes):
            grad[t, k] = np.exp(log_probs[t, k])
        for s in range(width):
            if alpha[t, s] != -np.inf and beta[s] != -np.inf:
                symbol = _extended_label(labels, s, blank)  # alpha and beta both count step t's emission
                grad[t, symbol] -= np.exp(alpha[t, s] + beta[s] - log_probs[t, symbol] - log_likelihood)
        beta, later = later, beta
    return -log_likelihood


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
def ctc_loss_rows(logits: np.ndarray, symbols: np.ndarray, skips: np.ndarray, min_steps: np.ndarray,
                  input_lengths: np.ndarray, label_lengths: np.ndarray, nll: np.ndarray, grad: np.ndarray,
                  probs: np.ndarray, alphas: np.ndarray, betas: np.ndarray, sequence_grads: np.ndarray, lo: int,
                  hi: int) -> None:
    """ctc_loss for the sequences [lo, hi) in scaled probability space; NaN in nll (and a zero gradient) for a
    sequence that needs the log-space recursions (ctc_loss_log_space_rows). probs (B, T, C), alphas
    (B, T, 2L + 1), betas (B, 2, 2L + 1) and sequence_grads (B, T, C), or (B, 0, 0) without a gradient, are
    float64 workspaces from the caller: allocating them here compiled more allocators. symbols, skips
    (B, 2L + 1) and min_steps (B,) come from _tabulate_labels."""
    want_grad = grad.shape[1] > 0
    classes = logits.shape[2]
    for b in range(lo, hi):
        steps, length = input_lengths[b], label_lengths[b]
        if want_grad:
            for t in range(grad.shape[1]):
                for k in range(classes):
                    grad[b, t, k] = 0.0
        if min_steps[b] > steps:
            nll[b] = np.inf
            continue
        if steps == 0:  # no steps and no labels: the empty alignment, probability 1
            nll[b] = 0.0
            continue
        sequence_probs, sequence_grad = probs[b, :steps], sequence_grads[b, :steps]
        _softmax(logits[b, :steps], sequence_probs, False)
        nll[b] = _scaled_recursions(sequence_probs, symbols[b], skips[b], length, alphas[b], betas[b],
                                    sequence_grad, want_grad)
        if want_grad and not np.isnan(nll[b]):
            for t in range(steps):
                for k in range(classes):
                    grad[b, t, k] = sequence_grad[t, k]


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def ctc_loss_log_space_rows(logits: np.ndarray, labels: np.ndarray, input_lengths: np.ndarray,
                            label_lengths: np.ndarray, blank: int, nll: np.ndarray, grad: np.ndarray,
                            redo: np.ndarray) -> None:
    """ctc_loss for the sequences in redo by the log-space recursions. A kernel of its own, called only when
    some scale underflowed: most runs never need it, and then never compile it (0.8 s with an empty cache)."""
    want_grad = grad.shape[1] > 0
    classes = logits.shape[2]
    for b in redo:
        steps, length = input_lengths[b], label_lengths[b]
        log_probs = np.empty((steps, classes))
        _softmax(logits[b, :steps], log_probs, True)
        sequence_grad = np.empty((steps, classes) if want_grad else (0, 0))
        nll[b] = _log_space_sequence(log_probs, labels[b], length, blank, sequence_grad, want_grad)
        if want_grad:
            for t in range(steps):
                for k in range(classes):
                    grad[b, t, k] = sequence_grad[t, k]


def _scaled_sequence(probs: np.ndarray, labels: np.ndarray, length: int, blank: int, grad: np.ndarray,
                     want_grad: bool) -> float:
    """_scaled_recursions for one sequence from its labels (L,), as the log-space one takes them (tests)."""
    symbols, skips, _ = _tabulate_labels(np.asarray(labels)[None, :], np.array([length]), blank)
    alpha, betas = np.empty((probs.shape[0], symbols.shape[1])), np.empty((2, symbols.shape[1]))
    return _scaled_recursions(probs, symbols[0], skips[0], length, alpha, betas, grad, want_grad)


def _tabulate_labels(labels: np.ndarray, label_lengths: np.ndarray,
                     blank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sequence (B, L labels): the extended sequence (blank, l1, blank, ..., blank) and where a path may
    skip the blank before position s (s a label that differs from the previous label), both (B, 2L + 1), and
    the fewest steps that can emit the labels: one per label, plus a blank between two equal neighbours."""
    rows, most = labels.shape
    symbols = np.full((rows, 2 * most + 1), blank, np.int64)
    symbols[:, 1::2] = labels
    repeats = labels[:, 1:] == labels[:, :-1]
    skips = np.zeros((rows, 2 * most + 1), np.bool_)
    skips[:, 3::2] = ~repeats
    inside = np.arange(1, most)[None, :] < np.asarray(label_lengths)[:, None]
    return symbols, skips, np.asarray(label_lengths, np.int64) + (repeats & inside).sum(axis=1)


def ctc_loss(logits: np.ndarray, labels: np.ndarray, input_lengths: np.ndarray, label_lengths: np.ndarray,
             blank: int, nll: np.ndarray, grad: np.ndarray) -> None:
    """nll (B,) = -log p(labels[b, :label_lengths[b]] | softmax(logits[b, :input_lengths[b]])), logits (B, T, C).

    grad (B, T, C), unless it is empty (shape (B, 0, 0): the loss alone), gets d nll[b] / d logits[b]
    = softmax - posterior occupancy of each class; zero past the input length, and zero for a sequence
    whose labels cannot fit in its steps: its loss is inf (as the reference implementations give).
    """
    probs = np.empty(logits.shape)
    sequence_grads = np.empty(logits.shape if grad.shape[1] > 0 else (logits.shape[0], 0, 0))
    symbols, skips, min_steps = _tabulate_labels(labels, label_lengths, blank)
    alphas = np.empty((*logits.shape[:2], symbols.shape[1]))
    betas = np.empty((logits.shape[0], 2, symbols.shape[1]))
    in_parts(ctc_loss_rows, logits.shape[0], logits, symbols, skips, min_steps, input_lengths, label_lengths, nll,
             grad, probs, alphas, betas, sequence_grads)
    redo = np.flatnonzero(np.isnan(nll))
    if redo.size:
        ctc_loss_log_space_rows(logits, labels, input_lengths, label_lengths, blank, nll, grad, redo)
