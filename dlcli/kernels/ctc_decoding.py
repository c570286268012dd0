"""CTC decoding kernels: prefix beam search over per-step log-probabilities, and the edit distance between label
sequences (the sequence metrics). The loss is in kernels/ctc.py, whose log-space addition this shares.

Like the loss, the beam search runs over blocks of sequences on threads (nogil kernels, kernels/parts.py).
"""

from __future__ import annotations

import numba
import numpy as np

from dlcli.kernels.ctc import _logaddexp
from dlcli.kernels.parts import in_parts


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
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


@numba.njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
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


@numba.njit(cache=True, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
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


def edit_distances(first: np.ndarray, first_lengths: np.ndarray, second: np.ndarray, second_lengths: np.ndarray,
                   out: np.ndarray) -> None:
    """out[b] = the Levenshtein distance between first[b, :first_lengths[b]] and second[b, :second_lengths[b]].

    Insertions, deletions and substitutions cost 1; one row of the dynamic programme is kept.
    """
    edit_distance_rows(first, first_lengths, second, second_lengths, out, np.empty(second.shape[1] + 1, np.int64))


@numba.njit(cache=True, error_model="numpy", no_cfunc_wrapper=True)
def edit_distance_rows(first: np.ndarray, first_lengths: np.ndarray, second: np.ndarray,
                       second_lengths: np.ndarray, out: np.ndarray, row: np.ndarray) -> None:
    """edit_distances with the programme's row (second's width + 1, int64) from the caller: allocated here, it
    compiled an allocator variant no other kernel of a run uses (0.03 s on an empty cache)."""
    for b in range(first.shape[0]):
        n, m = first_lengths[b], second_lengths[b]
        for j in range(m + 1):
            row[j] = j
        for i in range(1, n + 1):
            diagonal, row[0] = row[0], i
            for j in range(1, m + 1):
                above = row[j]
                # ifs, not min() of three: one Numba function less to compile
                best, left = above + 1, row[j - 1] + 1
                substitute = diagonal + (0 if first[b, i - 1] == second[b, j - 1] else 1)
                if left < best:
                    best = left
                if substitute < best:
                    best = substitute
                row[j] = best
                diagonal = above
        out[b] = row[m]
