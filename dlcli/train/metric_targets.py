"""Whether each metric of an output can score the targets that output trains on, known before any data loads."""

from __future__ import annotations

from dlcli.losses import SPARSE_LOSSES
from dlcli.metrics import Metric


def target_misfit(metric: Metric, loss: str, output_shape: tuple[int, ...], target_shape: tuple[int, ...] | None = None,
                  written: str | None = None) -> str | None:
    """Why `metric` (`written` so in the spec) cannot score an output of per-example `output_shape` trained with
    `loss`, or None when it can.

    The targets follow from the loss (train/datasets.py shapes them so): label sequences for ctc, integer labels
    (the output's shape less its class axis) for sparse_categorical_crossentropy, else the output's own shape;
    `target_shape`, when the data is loaded, tells labels from values the same way.
    """
    kind, width = written or metric.spec.type, output_shape[-1]
    if loss == "ctc" or metric.targets == "sequences":
        if loss != "ctc":
            return (f"{kind} scores CTC decodings against label sequences, but this output's loss is {loss}; it "
                    f'needs loss = "ctc"')
        if metric.targets != "sequences":
            return (f"a ctc output's targets are label sequences, which {kind} cannot score; use sequence_accuracy "
                    "(what accuracy means here) or edit_distance")
        return None
    labels = tuple(target_shape) != output_shape if target_shape is not None else loss in SPARSE_LOSSES
    if width == 1 or metric.targets == "labels_or_values":  # one unit: a label and a value are the same entry
        return None
    if labels and metric.targets == "values":
        return (f"{kind} compares the output's {width} values one by one with targets of the same shape, but {loss} "
                "trains it on integer class labels; use accuracy (or sparse_categorical_accuracy, "
                "sparse_top_k_categorical_accuracy), or train on one-hot targets: loss = \"categorical_crossentropy\" "
                "with data.one_hot = true")
    if not labels and metric.targets == "labels":
        return (f"{kind} takes integer class labels, but {loss} trains this output on targets of its own shape "
                f"{list(output_shape)}; use {kind.removeprefix('sparse_')} or accuracy")
    return None
