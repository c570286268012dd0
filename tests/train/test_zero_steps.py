"""The zeros a run's kernels compile on ahead (train/zero_steps.py): the run's targets, gradients and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.train.zero_steps import _masked_values, _with_gradients, layer_step, zero_targets


def _model(layers: list[dict], loss: str, shape: list[int], dtype: str = "float32"):  # type: ignore[no-untyped-def]
    spec = validate_spec({"name": "m", "data": {"train": "x.npz"},
                          "model": {"input": {"shape": shape, "dtype": dtype}, "layers": layers},
                          "train": {"loss": loss}}, Path("s.toml"))
    return build_model(spec.model, np.random.default_rng(0), spec)


def test_targets_gradients_and_masks_follow_the_run() -> None:
    model = _model([{"type": "embedding", "input_dim": 9, "output_dim": 3, "mask_zero": True, "name": "embed"},
                    {"type": "gru", "units": 4, "return_sequences": True, "name": "gru"},
                    {"type": "dense", "units": 5, "activation": "softmax", "name": "out"}], "ctc", [6], "int64")
    assert zero_targets(model, 4)["out"].tolist() == [[0]] * 4  # one label; the blank is the last class, 4
    assert _masked_values(model) == {"embed"}  # the GRU reads a masked sequence; its output is not kept masked
    assert _with_gradients(model) == {"embed", "gru", "out"}
    sparse = _model([{"type": "rescaling", "scale": 0.5, "name": "scale"},
                     {"type": "dense", "units": 3, "activation": "softmax", "name": "out"}],
                    "sparse_categorical_crossentropy", [7, 2])
    targets = zero_targets(sparse, 4)["out"]
    assert targets.shape == (4, 7) and targets.dtype == np.int64  # a class per step, as the loss takes them
    assert _with_gradients(sparse) == {"out"}  # the rescaled input needs no gradient, as in the run
    assert layer_step(sparse, sparse.nodes[1])
    assert sparse.nodes[1].layer.trainable_weights()["out/kernel"].grad is not None
