"""Weights from the data and from classes, through the readers and the splits: a sample_weight column is never a
feature and travels with its rows through the validation split; class weights per time step; the mistakes a user
can make with them, each named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlcli.errors import DataError, SpecError
from dlcli.graph import build_model
from dlcli.spec.load import validate_spec
from dlcli.train.datasets import load_splits
from dlcli.train.fit import fit_run


def _spec(train: Path, **data: object) -> dict:
    return {"name": "w", "data": {"train": str(train), **data},
            "model": {"input": {"shape": [2]}, "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
            "train": {"loss": "sparse_categorical_crossentropy", "epochs": 1, "batch_size": 4}}


def _splits(doc: dict):
    spec = validate_spec(doc, Path("s.toml"))
    return load_splits(spec, build_model(spec.model, np.random.default_rng(0), spec), np.random.default_rng(3))


def test_a_weight_column_is_not_a_feature_and_moves_with_its_rows(tmp_path: Path) -> None:
    rows = [(i, i % 3, i % 2, 0.5 * i) for i in range(20)]  # id, feature, label, weight
    (tmp_path / "t.csv").write_text("id,f,label,w\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))
    splits = _splits(_spec(tmp_path / "t.csv", target="label", sample_weight="w", validation_split=0.25))
    assert splits.schema["columns"] == ["id", "f"]  # every column but the target and the weights
    for split in (splits.train, splits.validation):
        ids = split.inputs["input"][:, 0]
        np.testing.assert_array_equal(split.weights["dense"], 0.5 * ids)  # each row kept its own weight
    assert len(splits.validation) == 5


def test_weights_from_an_npz_array_weigh_training_and_validation(tmp_path: Path) -> None:
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1] * 4), w=np.linspace(0, 1, 8))
    np.savez(tmp_path / "v.npz", x=x[:2], y=np.array([0, 1]), w=np.array([3.0, 0.0]))
    splits = _splits(_spec(tmp_path / "d.npz", sample_weight="w", validation=str(tmp_path / "v.npz")))
    np.testing.assert_allclose(splits.train.weights["dense"], np.linspace(0, 1, 8), rtol=1e-6)
    assert splits.validation.weights["dense"].tolist() == [3.0, 0.0]
    np.savez(tmp_path / "bad.npz", x=x, y=np.array([0, 1] * 4), w=-np.ones(8))
    with pytest.raises(DataError, match=r"bad.npz, array 'w', row 0: a sample weight is negative \(8 rows"):
        _splits(_spec(tmp_path / "bad.npz", sample_weight="w"))
    with pytest.raises(DataError, match=r"d.npz: no array 'weights' for the sample weights"):
        _splits(_spec(tmp_path / "d.npz", sample_weight="weights"))


def test_class_weights_per_time_step_for_sequence_targets(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 1], [1, 1, 1]])
    np.savez(tmp_path / "s.npz", x=np.ones((2, 3, 2), np.float32), y=labels)
    doc = _spec(tmp_path / "s.npz")
    doc["model"] = {"input": {"shape": [3, 2]}, "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}
    doc["train"]["class_weight"] = "balanced"
    splits = _splits(doc)
    # 1 zero and 5 ones among the 6 steps: 6 / (2 x 1) and 6 / (2 x 5)
    np.testing.assert_allclose(splits.train.weights["dense"], np.where(labels == 0, 3.0, 0.6), rtol=1e-6)
    summary = fit_run(validate_spec(doc, Path("s.toml")), tmp_path / "run", [])
    assert np.isfinite(summary["final"]["loss"])


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"class_weight": {"0": 1.0, "7": 2.0}}, SpecError, r"'7' is not a class of output 'dense'; it takes class ids "
                                                        r"0 to 1"),
    ({"class_weight": {"dense": {"0": 1.0}, "other": "balanced"}}, SpecError, r"no output 'other'"),
    ({"class_weight": "balanced", "loss": "mse"}, SpecError, r"output 'dense' has the loss mse, "
                                                              r"which has no classes"),
])
def test_class_weight_mistakes_are_named(tmp_path: Path, change: dict, error: type, message: str) -> None:
    y = np.zeros((4, 2), np.float32) if change.get("loss") == "mse" else np.array([0, 1, 0, 1])
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32), y=y)
    doc = _spec(tmp_path / "d.npz")
    doc["train"].update(change)
    with pytest.raises(error, match=message):
        _splits(doc)


def test_class_weight_with_sample_weight_is_refused_as_keras_does(tmp_path: Path) -> None:
    doc = _spec(tmp_path / "d.npz", sample_weight="w")
    doc["train"]["class_weight"] = "balanced"
    with pytest.raises(SpecError, match=r"give train.class_weight or data.sample_weight, not both"):
        validate_spec(doc, Path("s.toml"))
