"""CTC decoding: per-step class scores (batch, time, classes) -> label sequences padded with -1.

Greedy decoding (the best path) takes the most probable class at every step, merges repeats and drops
blanks. Prefix beam search keeps the `beam_width` most probable label prefixes, summing over all the
paths that give each one, so it can find a labelling more probable than the best path's (several
likely paths may share it). Both return the same format as CTC targets: (batch, longest) int64 rows
padded with -1.
"""

from __future__ import annotations

import numpy as np

from dlcli.activations import LogSoftmax


def _lengths(scores: np.ndarray, input_lengths: np.ndarray | None) -> np.ndarray:
    """Each sequence's number of steps: all of them by default, never more than the scores hold."""
    steps = scores.shape[1]
    if input_lengths is None:
        return np.full(scores.shape[0], steps, np.int64)
    return np.clip(np.asarray(input_lengths, np.int64).reshape(-1), 0, steps)


def _blank(blank: int | None, classes: int) -> int:
    if blank is None:
        return classes - 1
    if not -classes <= blank < classes:
        raise ValueError(f"blank {blank} is not one of the {classes} classes")
    return blank % classes


def pad_sequences(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The entries of each row of labels where keep is True, moved to the front and padded with -1."""
    counts = keep.sum(axis=1)
    out = np.full((len(labels), int(counts.max(initial=0))), -1, np.int64)
    rows, _ = np.nonzero(keep)
    positions = np.cumsum(keep, axis=1)[keep] - 1  # each kept entry's place in its row
    out[rows, positions] = labels[keep]
    return out


def ctc_greedy_decode(y_pred: np.ndarray, input_lengths: np.ndarray | None = None,
                      blank: int | None = None) -> np.ndarray:
    """Best-path decoding: argmax per step, repeats merged, blanks dropped; (batch, longest) padded with -1.

    y_pred (batch, time, classes) may be probabilities or logits (the argmax is the same); blank defaults
    to the last class; steps at or past input_lengths[b] are ignored.
    """
    y_pred = np.asarray(y_pred)
    best = y_pred.argmax(axis=-1)
    blank = _blank(blank, y_pred.shape[-1])
    previous = np.concatenate([np.full((len(best), 1), -1, best.dtype), best[:, :-1]], axis=1)
    valid = np.arange(best.shape[1]) < _lengths(y_pred, input_lengths)[:, None]
    return pad_sequences(best, (best != previous) & (best != blank) & valid)


def ctc_beam_search_decode(y_pred: np.ndarray, beam_width: int = 8, input_lengths: np.ndarray | None = None,
                           blank: int | None = None, from_logits: bool = False) -> np.ndarray:
    """Prefix beam search: the most probable labelling found with `beam_width` beams; padded with -1.

    y_pred (batch, time, classes) holds probabilities, or logits with from_logits (either is renormalized
    over classes first); blank defaults to the last class; steps at or past input_lengths[b] are ignored.
    """
    from dlcli.kernels import ctc_decoding as kernels  # numba loads on first use

    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    y_pred = np.asarray(y_pred)
    scores = y_pred if from_logits else np.log(np.maximum(y_pred, np.finfo(np.float32).tiny))
    log_probs = np.ascontiguousarray(LogSoftmax.function(scores.astype(np.float64, copy=False)))
    batch, steps, classes = log_probs.shape
    out = np.full((batch, steps), -1, np.int64)
    lengths = np.empty(batch, np.int64)
    kernels.ctc_beam_search(log_probs, _lengths(y_pred, input_lengths), _blank(blank, classes), beam_width,
                            out, lengths)
    return out[:, :int(lengths.max(initial=0))]


def ctc_decode(y_pred: np.ndarray, beam_width: int = 1, input_lengths: np.ndarray | None = None,
               blank: int | None = None, from_logits: bool = False) -> np.ndarray:
    """Greedy decoding for beam_width 1, else prefix beam search with that many beams."""
    if beam_width == 1:
        return ctc_greedy_decode(y_pred, input_lengths, blank)
    return ctc_beam_search_decode(y_pred, beam_width, input_lengths, blank, from_logits)
