"""Masks through a model: embedding(mask_zero) -> recurrent -> dense -> ctc, so padding never counts in the
loss, the sequence metrics or `dlcli predict`, whether it comes before or after the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli.decoding import ctc_greedy_decode
from dlcli.graph import build_model
from dlcli.losses import create_loss
from dlcli.spec.load import validate_spec
from dlcli.tensor import Tensor, no_grad
from dlcli.train.fit import fit_run
from dlcli.train.loop import predict
from dlcli.train.predictions import decode_sequences
from dlcli.train.run_checkpoints import load_run

STEPS, VOCAB = 7, 6


def doc(layers: list[dict[str, Any]] | None = None, data: str = "d.npz") -> dict[str, Any]:
    return {"name": "masked", "seed": 3, "data": {"train": data},
            "model": {"input": {"shape": [STEPS], "dtype": "int32"},
                      "layers": layers or [{"type": "embedding", "input_dim": VOCAB, "output_dim": 5, "mask_zero": True},
                                           {"type": "lstm", "units": 6, "return_sequences": True},
                                           {"type": "dense", "units": 4, "activation": "softmax"}]},
            "train": {"loss": "ctc", "optimizer": {"type": "adam", "learning_rate": 0.02},
                      "metrics": ["sequence_accuracy", "edit_distance"], "epochs": 1, "batch_size": 8}}


def padded_ids(rng: np.random.Generator, n: int, left: bool) -> np.ndarray:
    """Token rows of 4..STEPS ids in [1, VOCAB), padded with 0 before (left) or after the data."""
    ids = np.zeros((n, STEPS), np.int32)
    for i, length in enumerate(rng.integers(4, STEPS + 1, n)):
        row = rng.integers(1, VOCAB, length)
        if left:
            ids[i, STEPS - length:] = row
        else:
            ids[i, :length] = row
    return ids


def built(document: dict[str, Any]) -> Any:
    spec = validate_spec(document, Path("s.toml"))
    return build_model(spec.model, np.random.default_rng(0), spec)


def unpadded(row: np.ndarray) -> np.ndarray:
    return row[row != 0][None, :]


def test_dense_and_activation_hand_the_mask_on_and_flatten_drops_it() -> None:
    model = built(doc())
    ids = padded_ids(np.random.default_rng(1), 5, left=True)
    with no_grad():
        values = model.trace({"input": Tensor(ids)})
    for node in model.nodes:
        np.testing.assert_array_equal(values[node.name].mask, ids != 0)
    flat = doc([{"type": "embedding", "input_dim": VOCAB, "output_dim": 2, "mask_zero": True}, {"type": "flatten"},
                {"type": "dense", "units": 4}])
    flat["train"]["loss"], flat["train"]["metrics"] = "mse", []
    model = built(flat)
    with no_grad():
        assert model({"input": Tensor(ids)})["dense"].mask is None


@pytest.mark.parametrize("left", [False, True])
def test_the_ctc_loss_of_a_padded_batch_is_the_mean_of_each_sequence_run_alone(left: bool) -> None:
    model = built(doc())
    rng = np.random.default_rng(2)
    ids = padded_ids(rng, 6, left)
    labels = np.array([[0, 1, -1], [2, -1, -1], [1, 1, -1], [0, 2, 1], [2, 2, -1], [1, -1, -1]])
    loss = create_loss("ctc")
    with no_grad():
        batch = loss(model({"input": Tensor(ids)})["dense"], labels).item()
        alone = [loss(model({"input": Tensor(unpadded(row))})["dense"], labels[i:i + 1]).item()
                 for i, row in enumerate(ids)]
    assert batch == pytest.approx(np.mean(alone), rel=1e-5)


@pytest.mark.parametrize("left", [False, True])
def test_predict_and_eval_decode_only_the_unpadded_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          left: bool) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(4)
    ids = padded_ids(rng, 48, left)
    labels = np.full((48, 3), -1)
    labels[:, 0] = (ids[np.arange(48), (ids != 0).argmax(axis=1)] - 1) % 3  # the first token's class
    np.savez("d.npz", x=ids, y=labels)
    np.save("x.npy", ids[:12])
    document = doc()
    document["train"]["epochs"] = 10
    fit_run(validate_spec(document, tmp_path / "s.toml"), tmp_path / "run", [])
    _, model, _, _, _ = load_run(tmp_path / "run")
    with no_grad():
        expected = [[int(v) for v in ctc_greedy_decode(model({"input": Tensor(unpadded(row))})["dense"].data)[0]
                     if v >= 0] for row in ids[:12]]
    result = CliRunner().invoke(cli, ["predict", "run", "x.npy", "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["labels"] for line in result.output.splitlines()] == expected
    # decoding every step (the padding too) gives other sequences here, so the mask did the work
    np.savez("held.npz", x=ids[:12], y=labels[:12])
    record = json.loads(CliRunner().invoke(cli, ["eval", "run", "--data", "held.npz", "--json"]).output.splitlines()[-1])
    truth = [[int(v) for v in row if v >= 0] for row in labels[:12]]
    assert record["sequence_accuracy"] == pytest.approx(np.mean([e == t for e, t in zip(expected, truth)]))


@pytest.mark.parametrize("left", [False, True])
def test_padding_that_would_decode_to_labels_is_left_out_by_predict(left: bool) -> None:
    """Hand weights: id k reads as class (k - 1) % 4 (3 is the blank), and the padding id 0 as class 0."""
    model = built(doc([{"type": "embedding", "input_dim": VOCAB, "output_dim": 4, "mask_zero": True},
                       {"type": "dense", "units": 4, "activation": "softmax"}]))
    table = np.zeros((VOCAB, 4), np.float32)
    table[0, 0] = 1.0
    table[np.arange(1, VOCAB), (np.arange(1, VOCAB) - 1) % 4] = 1.0
    model.nodes[0].layer.params["embeddings"].data[...] = table
    model.nodes[1].layer.params["kernel"].data[...] = 10 * np.eye(4, dtype=np.float32)
    ids = padded_ids(np.random.default_rng(6), 20, left)
    expected = []
    for row in ids:
        path = (row[row != 0] - 1) % 4
        expected.append([int(c) for j, c in enumerate(path) if (j == 0 or c != path[j - 1]) and c != 3])
    outputs, masks = predict(model, {"input": ids}, 8)
    np.testing.assert_array_equal(masks["dense"], ids != 0)
    for beam_width in (None, 3):
        decoded = decode_sequences(outputs, model, beam_width, masks)["dense"]
        assert [[int(v) for v in row if v >= 0] for row in decoded] == expected
    # the same scores decoded over every step read the padding as label 0
    everything = decode_sequences(outputs, model, None)["dense"]
    assert [[int(v) for v in row if v >= 0] for row in everything] != expected


def tagger_doc(data: str, loss: str = "sparse_categorical_crossentropy") -> dict[str, Any]:
    """A per-step tagger: every token gets a class of its own, padded steps get whatever the targets hold."""
    document = doc([{"type": "embedding", "input_dim": VOCAB, "output_dim": 5, "mask_zero": True},
                    {"type": "lstm", "units": 8, "return_sequences": True},
                    {"type": "dense", "units": 3, "activation": "softmax"}], data)
    document["train"].update(loss=loss, metrics=["accuracy"], epochs=3)
    document["data"]["validation_split"] = 0.25
    return document


def tagged(rng: np.random.Generator, n: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Padded ids and per-step classes: the token's class (id % 3) where there is data, random on padding."""
    ids = padded_ids(rng, n, left)
    return ids, np.where(ids != 0, ids % 3, rng.integers(0, 3, ids.shape))


@pytest.mark.parametrize("left", [False, True])
def test_a_per_step_loss_and_accuracy_ignore_whatever_the_padded_targets_hold(tmp_path: Path, left: bool) -> None:
    ids, classes = tagged(np.random.default_rng(8), 64, left)
    other = np.where(ids != 0, classes, (classes + 1) % 3)  # different targets on every padded step only
    np.savez(tmp_path / "a.npz", x=ids, y=classes)
    np.savez(tmp_path / "b.npz", x=ids, y=other)
    histories = []
    for name in ("a", "b"):
        fit_run(validate_spec(tagger_doc(str(tmp_path / f"{name}.npz")), tmp_path / "s.toml"), tmp_path / name, [])
        histories.append(json.loads((tmp_path / name / "summary.json").read_text())["final"])
    assert histories[0] == histories[1]
    # the reported accuracy counts valid steps only: recompute it from the trained model's predictions
    _, model, _, _, _ = load_run(tmp_path / "a")
    outputs, masks = predict(model, {"input": ids}, 16)
    np.testing.assert_array_equal(masks["dense"], ids != 0)
    record = json.loads(CliRunner().invoke(cli, ["eval", str(tmp_path / "a"), "--data", str(tmp_path / "b.npz"),
                                                 "--json"]).output.splitlines()[-1])
    hits = outputs["dense"].argmax(axis=-1) == classes
    assert record["accuracy"] == pytest.approx(hits[ids != 0].mean(), abs=1e-6)
    assert record["accuracy"] != pytest.approx(hits.mean(), abs=1e-3)
    # the loss: each batch's mean over its valid steps, averaged over batches by their rows, as Keras reports it
    loss, batch_losses = create_loss("sparse_categorical_crossentropy"), []
    for start in range(0, len(ids), 8):
        valid = ids[start:start + 8] != 0
        with no_grad():
            batch_losses.append(loss(Tensor(outputs["dense"][start:start + 8][valid]),
                                     classes[start:start + 8][valid]).item())
    assert record["loss"] == pytest.approx(np.mean(batch_losses), rel=1e-5)


def test_predict_gives_a_tagger_one_label_per_valid_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ids, classes = tagged(np.random.default_rng(9), 96, left=False)
    np.savez("d.npz", x=ids, y=classes)
    document = tagger_doc("d.npz")
    document["train"]["epochs"] = 25
    fit_run(validate_spec(document, tmp_path / "s.toml"), tmp_path / "run", [])
    np.save("x.npy", ids[:10])
    result = CliRunner().invoke(cli, ["predict", "run", "x.npy", "--json"])
    assert result.exit_code == 0, result.output
    labels = [json.loads(line)["labels"] for line in result.output.splitlines()]
    assert [len(row) for row in labels] == [int(n) for n in (ids[:10] != 0).sum(axis=1)]
    truth = [list(row[row != 0] % 3) for row in ids[:10]]
    assert np.mean([p == t for row_p, row_t in zip(labels, truth) for p, t in zip(row_p, row_t)]) > 0.9
    plain = CliRunner().invoke(cli, ["predict", "run", "x.npy"]).output.splitlines()
    assert plain[0] == "index=0 labels=" + ",".join(map(str, labels[0]))
    assert CliRunner().invoke(cli, ["predict", "run", "x.npy", "--output", "p.csv"]).exit_code == 0
    assert Path("p.csv").read_text().splitlines()[:2] == ["labels", " ".join(map(str, labels[0]))]
