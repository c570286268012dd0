"""Text end to end: a CSV text column trains through text_vectorization, and the vocabulary survives checkpoints."""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError, DataError, SpecError
from dlcli.spec.load import validate_spec
from dlcli.train.fit import fit_run
from dlcli.train.loop import predict
from dlcli.train.predictions import read_prediction_inputs
from dlcli.train.run_checkpoints import load_run, restore_model

POSITIVE = ["great", "excellent", "loved", "wonderful", "superb", "moving"]
NEGATIVE = ["awful", "terrible", "boring", "hated", "worst", "dull"]
FILLER = ["the", "movie", "plot", "acting", "was", "and", "it", "a", "film", "honestly", "really"]


def write_reviews(path: Path, count: int = 240, seed: int = 0) -> Path:
    """A tiny sentiment CSV: filler words plus one or two words of the label's sentiment, with commas and quotes."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "review", "label"])
        for i in range(count):
            label = int(rng.integers(0, 2))
            words = list(rng.choice(FILLER, 6)) + list(rng.choice(POSITIVE if label else NEGATIVE, rng.integers(1, 3)))
            rng.shuffle(words)
            text = f"{words[0].capitalize()}, {' '.join(words[1:4])}, \"{' '.join(words[4:])}\"!"
            writer.writerow([i, text, label])
    return path


def text_spec(train: Path, **data: Any) -> dict[str, Any]:
    return {"name": "reviews", "seed": 3,
            "data": {"train": str(train), "text": "review", "target": "label", "validation_split": 0.2, **data},
            "model": {"input": {"shape": [1], "dtype": "string"},
                      "layers": [{"type": "text_vectorization", "output_mode": "multi_hot", "max_tokens": 40},
                                 {"type": "dense", "units": 8, "activation": "relu"},
                                 {"type": "dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
                      "metrics": ["accuracy"], "epochs": 8, "batch_size": 16}}


def fit(doc: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    return fit_run(validate_spec(copy.deepcopy(doc), Path("s.toml")), run_dir, [])


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("text")
    fit(text_spec(write_reviews(folder / "reviews.csv")), folder / "run")
    return folder


def test_a_csv_text_column_trains_through_text_vectorization(text_run: Path) -> None:
    import json

    history = [json.loads(line) for line in (text_run / "run" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["accuracy"] > 0.9 and history[-1]["val_accuracy"] > 0.9


def test_the_vocabulary_is_adapted_saved_and_restored(text_run: Path) -> None:
    arrays, _ = load_checkpoint(text_run / "run" / "checkpoints" / "last.safetensors")
    data, offsets = (arrays[f"state/text_vectorization/vocabulary_{part}"] for part in ("bytes", "offsets"))
    saved = [data[a:b].tobytes().decode() for a, b in zip(offsets[:-1], offsets[1:])]
    assert saved[0] == "[UNK]" and len(saved) == 1 + len(POSITIVE + NEGATIVE + FILLER)  # every word fits
    _, model, _, _, _ = load_run(text_run / "run", "last")
    layer = model.layers[0]
    assert layer.get_vocabulary() == saved
    texts = np.array([["A wonderful, superb film"], ["Boring and awful."], ["the plot"]])
    probabilities = predict(model, {"input": texts}, 2)[0]["dense_1"][:, 0]
    assert probabilities[0] > 0.5 > probabilities[1]
    assert model.parameter_counts() == (40 * 8 + 8 + 8 + 1, 0)  # Keras: TextVectorization has no params
    assert model.summary_rows()[0]["params"] == 0


def test_a_damaged_vocabulary_is_a_checkpoint_error(text_run: Path) -> None:
    arrays, _ = load_checkpoint(text_run / "run" / "checkpoints" / "last.safetensors")
    _, model, _, _, _ = load_run(text_run / "run", "last")
    arrays["state/text_vectorization/vocabulary_offsets"] = arrays["state/text_vectorization/vocabulary_offsets"][:-1]
    with pytest.raises(CheckpointError, match="text_vectorization.*offsets"):
        restore_model(model, arrays, Path("c.safetensors"))
    del arrays["state/text_vectorization/vocabulary_bytes"]
    with pytest.raises(CheckpointError, match="missing tensor"):
        restore_model(model, arrays, Path("c.safetensors"))


def test_predict_reads_text_files_and_the_csv_text_column(text_run: Path) -> None:
    spec, model, _, _, _ = load_run(text_run / "run")
    (text_run / "new.txt").write_text("Superb, moving film\r\nthe worst, dull movie\n\nloved it\n", encoding="utf-8")
    inputs = read_prediction_inputs(text_run / "new.txt", spec, model).arrays
    assert inputs["input"].tolist() == [["Superb, moving film"], ["the worst, dull movie"], [""], ["loved it"]]
    labels = predict(model, inputs, 8)[0]["dense_1"][:, 0] > 0.5
    assert labels.tolist() == [True, False, labels[2], True]
    from_csv = read_prediction_inputs(text_run / "reviews.csv", spec, model).arrays["input"]
    assert from_csv.shape == (240, 1) and from_csv.dtype.kind == "U" and "," in from_csv[0, 0]
    np.save(text_run / "numbers.npy", np.zeros((2, 1), np.float32))
    with pytest.raises(DataError, match="takes text"):
        read_prediction_inputs(text_run / "numbers.npy", spec, model)


def test_text_in_an_npz_trains_too(tmp_path: Path) -> None:
    rows = list(csv.reader(write_reviews(tmp_path / "r.csv", count=64).open(encoding="utf-8")))[1:]
    np.savez(tmp_path / "r.npz", x=np.array([row[1] for row in rows]), y=np.array([int(row[2]) for row in rows]))
    doc = text_spec(tmp_path / "r.npz")
    del doc["data"]["text"], doc["data"]["target"]
    doc["train"]["epochs"] = 1
    summary = fit(doc, tmp_path / "run")
    assert summary["epochs_run"] == 1


def test_text_data_mistakes_are_explained(tmp_path: Path) -> None:
    reviews = write_reviews(tmp_path / "r.csv", count=20)
    no_column = text_spec(reviews)
    del no_column["data"]["text"]
    with pytest.raises(SpecError, match='data.text: the model takes text.*text = "review"'):
        fit(no_column, tmp_path / "a")
    wrong_column = text_spec(reviews, text="body")
    with pytest.raises(DataError, match="has no column 'body'"):
        fit(wrong_column, tmp_path / "b")
    numeric = text_spec(reviews)
    numeric["model"] = {"input": {"shape": [1]}, "layers": numeric["model"]["layers"][1:]}
    with pytest.raises(SpecError, match="data.text: the model's input is numeric"):
        fit(numeric, tmp_path / "c")
    np.savez(tmp_path / "n.npz", x=np.zeros((20, 1), np.float32), y=np.zeros(20))
    numbers_for_text = text_spec(tmp_path / "n.npz")
    del numbers_for_text["data"]["text"], numbers_for_text["data"]["target"]
    with pytest.raises(DataError, match=r"takes text \(dtype = \"string\"\), but the data has dtype float32"):
        fit(numbers_for_text, tmp_path / "d")
