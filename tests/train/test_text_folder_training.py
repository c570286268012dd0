"""A text model trained on a folder of .txt files, one review a file, and predicting on a folder: each file's
class name and probability, by path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.data.image_trees import write_text_tree
from tests.train import faults
from tests.train.test_fit import fit

GOOD, BAD = ["great", "superb", "wonderful", "loved", "fun"], ["awful", "boring", "dull", "hated", "waste"]
FILLER = ["the", "movie", "plot", "actor", "was", "and", "a"]


def reviews(rng: np.random.Generator, words: list[str], count: int) -> list[str]:
    return [" ".join(rng.choice(FILLER + words, 12)) for _ in range(count)]


def test_a_text_folder_trains_a_bag_of_words_and_predict_names_each_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_text_tree(tmp_path / "train", {"neg": reviews(rng, BAD, 40), "pos": reviews(rng, GOOD, 40),
                                         "unsup": reviews(rng, GOOD + BAD, 5)})
    write_text_tree(tmp_path / "new", {"some": reviews(rng, GOOD, 3) + reviews(rng, BAD, 3)})
    doc = {"name": "reviews", "seed": 1,
           "data": {"train": str(tmp_path / "train"), "validation_split": 0.2, "class_names": ["neg", "pos"]},
           "model": {"input": {"shape": [1], "dtype": "string"},
                     "layers": [{"type": "text_vectorization", "max_tokens": 100, "output_mode": "multi_hot"},
                                {"type": "dense", "units": 8, "activation": "relu"},
                                {"type": "dense", "units": 1, "activation": "sigmoid"}]},
           "train": {"loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                     "metrics": ["accuracy"], "epochs": 10, "batch_size": 16}}
    summary = fit(doc, tmp_path / "run")
    assert summary["samples"] == 64 and summary["final"]["val_accuracy"] >= 0.9
    done = subprocess.run([sys.executable, "-m", "dlcli", "predict", str(tmp_path / "run"), str(tmp_path / "new"),
                           "--json"], env=faults.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(tmp_path / f"new/some/{i:03d}.txt") for i in range(6)]
    assert [row["label"] for row in rows] == ["pos"] * 3 + ["neg"] * 3
