"""Connectionist temporal classification kernels: the loss and its gradient, prefix beam search, edit distance.

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
site): 1 s less to compile, and LLVM inlines them anyway (the same run time, measured).
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.parts import in_parts


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _logaddexp(a: float, b: float) -> float:
    """log(e^a + e^b), exact when either is -inf (np.logaddexp is slower here: it handles NaN and inf+inf)."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _extended_label(labels: np.ndarray, s: int, blank: int) -> int:
    """Symbol s of the extended sequence (blank, l1, blank, l2, ..., blank)."""
    return blank if s % 2 == 0 else labels[s // 2]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _may_skip(labels: np.ndarray, s: int) -> bool:
    """Whether a path may jump from s - 2 to s: s is a label that differs from the label before the blank."""
    return s % 2 == 1 and s >= 2 and labels[s // 2] != labels[s // 2 - 1]


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _softmax(logits: np.ndarray, out: np.ndarray, log: bool) -> None:
    """out (T, C) float64 = softmax(logits), or log_softmax with `log`, shifted by each step's maximum."""
    for t in range(out.shape[0]):
        top = logits[t, 0]
        for k in range(1, out.shape[1]):
            top = max(top, logits[t, k])
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


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _min_steps(labels: np.ndarray, length: int) -> int:
    """The fewest steps that can emit labels: one per label, plus a blank between two equal neighbours."""
    steps = length
    for i in range(1, length):
        if labels[i] == labels[i - 1]:
            steps += 1
    return steps


@numba.njit(cache=True, error_model="numpy")
def _scaled_sequence(probs: np.ndarray, labels: np.ndarray, length: int, blank: int, grad: np.ndarray,
                     want_grad: bool) -> float:
    """-log p(labels | probs) (T, C) by rescaled probability-space recursions; NaN where a scale underflows.

    alpha[t, s] is the probability of the path prefixes that emit steps 0..t and stand on s at t, divided
    by the product of the scales so far; beta (two rows, rolled) is the same for the suffixes from t on.
    Both include step t's emission, so alpha * beta / y is proportional to the probability of the paths
    through s at t; normalized over s it is the posterior occupancy, and grad[t] = y - occupancy.
    """
    steps, classes = probs.shape
    width = 2 * length + 1
    alpha = np.zeros((steps, width))
    alpha[0, 0] = probs[0, blank]
    if width > 1:
        alpha[0, 1] = probs[0, labels[0]]
    log_likelihood = 0.0
    for t in range(steps):
        if t > 0:
            for s in range(width):
                total = alpha[t - 1, s]
                if s >= 1:
                    total += alpha[t - 1, s - 1]
                if _may_skip(labels, s):
                    total += alpha[t - 1, s - 2]
                alpha[t, s] = total * probs[t, _extended_label(labels, s, blank)]
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

    beta, later = np.zeros(width), np.zeros(width)
    for t in range(steps - 1, -1, -1):
        scale = 0.0
        for s in range(width):
            if t == steps - 1:
                total = 1.0 if s >= width - 2 else 0.0
            else:
                total = later[s]
                if s + 1 < width:
                    total += later[s + 1]
                if s + 2 < width and _may_skip(labels, s + 2):
                    total += later[s + 2]
            beta[s] = total * probs[t, _extended_label(labels, s, blank)]
            scale += beta[s]
        if scale == 0.0:
            return np.nan
        occupied = 0.0
        for s in range(width):
            beta[s] /= scale
            y = probs[t, _extended_label(labels, s, blank)]
            later[s] = alpha[t, s] * beta[s] / y if y > 0.0 else 0.0  # `later` is free until the swap
            occupied += later[s]
        if occupied == 0.0:
            return np.nan
        for k in range(classes):
            grad[t, k] = probs[t, k]
        for s in range(width):
            grad[t, _extended_label(labels, s, blank)] -= later[s] / occupied
        beta, later = later, beta
    return -log_likelihood


@numba.njit(cache=True, error_model="numpy")
def _log_space_sequence(log_probs: np.ndarray, labels: np.ndarray, length: int, blank: int, grad: np.ndarray,
                        want_grad: bool) -> float:
    """-log p(labels | log_probs) (T, C) by log-space recursions: slower, but never underflows.

    The same recursions as _scaled_sequence with logaddexp for sums: alpha + beta - log y is the
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


@numba.njit(cache=True, error_model="numpy", nogil=True)
def ctc_loss_rows(logits: np.ndarray, labels: np.ndarray, input_lengths: np.ndarray, label_lengths: np.ndarray,
                  blank: int, nll: np.ndarray, grad: np.ndarray, lo: int, hi: int) -> None:
    """ctc_loss for the sequences [lo, hi) in scaled probability space; NaN in nll (and a zero gradient) for a
    sequence that needs the log-space recursions (ctc_loss_log_space_rows)."""
    want_grad = grad.shape[1] > 0
    classes = logits.shape[2]
    for b in range(lo, hi):
        steps, length = input_lengths[b], label_lengths[b]
        if want_grad:
            for t in range(grad.shape[1]):
                for k in range(classes):
                    grad[b, t, k] = 0.0
        if _min_steps(labels[b], length) > steps:
            nll[b] = np.inf
            continue
        if steps == 0:  # no steps and no labels: the empty alignment, probability 1
            nll[b] = 0.0
            continue
        probs = np.empty((steps, classes))
        _softmax(logits[b, :steps], probs, False)
        sequence_grad = np.empty((steps, classes) if want_grad else (0, 0))
        nll[b] = _scaled_sequence(probs, labels[b], length, blank, sequence_grad, want_grad)
        if want_grad and not np.isnan(nll[b]):
            for t in range(steps):
                for k in range(classes):
                    grad[b, t, k] = sequence_grad[t, k]


@numba.njit(cache=True, error_model="numpy")
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


def ctc_loss(logits: np.ndarray, labels: np.ndarray, input_lengths: np.ndarray, label_lengths: np.ndarray,
             blank: int, nll: np.ndarray, grad: np.ndarray) -> None:
    """nll (B,) = -log p(labels[b, :label_lengths[b]] | softmax(logits[b, :input_lengths[b]])), logits (B, T, C).

    grad (B, T, C), unless it is empty (shape (B, 0, 0): the loss alone), gets d nll[b] / d logits[b]
    = softmax - posterior occupancy of each class; zero past the input length, and zero for a sequence
    whose labels cannot fit in its steps: its loss is inf (as the reference implementations give).
    """
    in_parts(ctc_loss_rows, logits.shape[0], logits, labels, input_lengths, label_lengths, blank, nll, grad)
    redo = np.flatnonzero(np.isnan(nll))
    if redo.size:
        ctc_loss_log_space_rows(logits, labels, input_lengths, label_lengths, blank, nll, grad, redo)


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _parents(prefixes: np.ndarray, lengths: np.ndarray, count: int, parent: np.ndarray) -> None:
    """parent[j] = the beam i whose prefix is beam j's without its last label, or -1."""
    for j in range(count):
        parent[j] = -1
        if lengths[j] == 0:
            continue
        for i in range(count):
            if lengths[i] != lengths[j] - 1:
                continue
            same = True
            for k in range(lengths[i]):
                if prefixes[i, k] != prefixes[j, k]:
                    same = False
                    break
            if same:
                parent[j] = i
                break


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True)
def _beam_search_sequence(log_probs: np.ndarray, steps: int, blank: int, beam_width: int, out: np.ndarray) -> int:
    """Prefix beam search over log_probs[:steps] (T, C); writes the best labelling to out, returns its length.

    Each beam is a label prefix with two log-probabilities: of the paths that end in a blank and of those
    that end in its last label (needed because a repeated label only extends a prefix across a blank).
    Each step every beam stays (blank, or its last label again) or grows by one label; candidates that
    reach the same prefix are merged, and the `beam_width` most probable survive.
    """
    classes = log_probs.shape[1]
    max_len = out.shape[0]
    prefixes = np.zeros((beam_width, max_len), np.int64)
    new_prefixes = np.zeros((beam_width, max_len), np.int64)
    lengths, new_lengths = np.zeros(beam_width, np.int64), np.zeros(beam_width, np.int64)
    p_blank, p_label = np.full(beam_width, -np.inf), np.full(beam_width, -np.inf)
    parent = np.empty(beam_width, np.int64)
    n_candidates = beam_width * (classes + 1)
    cand_beam, cand_label = np.empty(n_candidates, np.int64), np.empty(n_candidates, np.int64)
    cand_blank, cand_nonblank = np.empty(n_candidates), np.empty(n_candidates)
    scores = np.empty(n_candidates)
    p_blank[0] = 0.0  # one beam: the empty prefix, with probability 1
    count = 1
    for t in range(steps):
        _parents(prefixes, lengths, count, parent)
        # candidates 0..count-1: each beam staying as it is (label -1)
        for i in range(count):
            last = prefixes[i, lengths[i] - 1] if lengths[i] > 0 else -1
            cand_beam[i], cand_label[i] = i, -1
            cand_blank[i] = _logaddexp(p_blank[i], p_label[i]) + log_probs[t, blank]
            cand_nonblank[i] = p_label[i] + log_probs[t, last] if last >= 0 else -np.inf
        n = count
        for i in range(count):
            last = prefixes[i, lengths[i] - 1] if lengths[i] > 0 else -1
            total = _logaddexp(p_blank[i], p_label[i])
            for c in range(classes):
                if c == blank:
                    continue
                # after the same label, only paths that passed a blank start a new one
                grown = (p_blank[i] if c == last else total) + log_probs[t, c]
                merged = False
                for j in range(count):
                    if parent[j] == i and prefixes[j, lengths[j] - 1] == c:  # that prefix is already a beam
                        cand_nonblank[j] = _logaddexp(cand_nonblank[j], grown)
                        merged = True
                        break
                if not merged:
                    cand_beam[n], cand_label[n], cand_blank[n], cand_nonblank[n] = i, c, -np.inf, grown
                    n += 1
        for k in range(n):
            scores[k] = -_logaddexp(cand_blank[k], cand_nonblank[k])
        order = np.argsort(scores[:n], kind="mergesort")  # stable: ties keep beams before newcomers
        kept = 0
        for r in range(min(beam_width, n)):
            k = order[r]
            if scores[k] == np.inf and kept > 0:
                break
            i = cand_beam[k]
            new_prefixes[kept, :lengths[i]] = prefixes[i, :lengths[i]]
            new_lengths[kept] = lengths[i]
            if cand_label[k] >= 0:
                new_prefixes[kept, lengths[i]] = cand_label[k]
                new_lengths[kept] += 1
            p_blank[kept], p_label[kept] = cand_blank[k], cand_nonblank[k]
            kept += 1
        prefixes, new_prefixes = new_prefixes, prefixes
        lengths, new_lengths = new_lengths, lengths
        count = kept
    best, best_score = 0, -np.inf
    for i in range(count):
        score = _logaddexp(p_blank[i], p_label[i])
        if score > best_score:
            best, best_score = i, score
    out[:lengths[best]] = prefixes[best, :lengths[best]]
    return lengths[best]


@numba.njit(cache=True, error_model="numpy", nogil=True)
def ctc_beam_search_rows(log_probs: np.ndarray, input_lengths: np.ndarray, blank: int, beam_width: int,
                         out: np.ndarray, out_lengths: np.ndarray, lo: int, hi: int) -> None:
    """ctc_beam_search for the sequences [lo, hi)."""
    for b in range(lo, hi):
        out_lengths[b] = _beam_search_sequence(log_probs[b], input_lengths[b], blank, beam_width, out[b])


def ctc_beam_search(log_probs: np.ndarray, input_lengths: np.ndarray, blank: int, beam_width: int,
                    out: np.ndarray, out_lengths: np.ndarray) -> None:
    """The most probable labelling of each of the (B, T, C) log_probs found by prefix beam search.

    out (B, T) gets each labelling in its first out_lengths[b] entries (the rest is left as it was).
    """
    in_parts(ctc_beam_search_rows, log_probs.shape[0], log_probs, input_lengths, blank, beam_width, out, out_lengths)


@numba.njit(cache=True, error_model="numpy")
def edit_distances(first: np.ndarray, first_lengths: np.ndarray, second: np.ndarray, second_lengths: np.ndarray,
                   out: np.ndarray) -> None:
    """out[b] = the Levenshtein distance between first[b, :first_lengths[b]] and second[b, :second_lengths[b]].

    Insertions, deletions and substitutions cost 1; one row of the dynamic programme is kept.
    """
    row = np.empty(second.shape[1] + 1, np.int64)
    for b in range(first.shape[0]):
        n, m = first_lengths[b], second_lengths[b]
        for j in range(m + 1):
            row[j] = j
        for i in range(1, n + 1):
            diagonal, row[0] = row[0], i
            for j in range(1, m + 1):
                above = row[j]
                row[j] = min(above + 1, row[j - 1] + 1, diagonal + (0 if first[b, i - 1] == second[b, j - 1] else 1))
                diagonal = above
        out[b] = row[m]
