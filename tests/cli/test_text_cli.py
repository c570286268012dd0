"""Text models on the command line: train on a CSV text column, predict on a .txt file of raw strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import dlcli
from tests.train.test_text_input import write_reviews

SPEC = """
name = "reviews"
seed = 3

[data]
train = "reviews.csv"
text = "review"
target = "label"

[model]
input = { shape = [1], dtype = "string" }

[[model.layers]]
type = "text_vectorization"
output_mode = "multi_hot"
max_tokens = 40

[[model.layers]]
type = "dense"
units = 8
activation = "relu"

[[model.layers]]
type = "dense"
units = 1
activation = "sigmoid"

[train]
loss = "binary_crossentropy"
optimizer = { type = "adam", learning_rate = 0.02 }
metrics = ["accuracy"]
epochs = 8
batch_size = 16
"""


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("text-cli")
    write_reviews(folder / "reviews.csv")
    (folder / "reviews.toml").write_text(SPEC)
    result = dlcli("train", "reviews.toml", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_predict_takes_raw_strings_from_a_text_file(text_run: Path) -> None:
    (text_run / "new.txt").write_text("A superb, moving film!\nBoring... the worst movie\n", encoding="utf-8")
    out = dlcli("predict", "runs/reviews", "new.txt", "--json", cwd=text_run)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [row["label"] for row in rows] == [1, 0]
    assert rows[0]["probability"] > 0.5 > rows[1]["probability"]


def test_summary_counts_no_parameters_for_text_vectorization(text_run: Path) -> None:
    from_spec = dlcli("summary", "reviews.toml", cwd=text_run)
    from_run = dlcli("summary", "runs/reviews", cwd=text_run)
    assert from_spec.returncode == from_run.returncode == 0, from_spec.stderr + from_run.stderr
    assert from_spec.stdout == from_run.stdout
    line = next(line for line in from_spec.stdout.splitlines() if "TextVectorization" in line)
    assert line.split()[-2:] == ["0", "-"] and "Total params: 337" in from_spec.stdout  # params, connected to


def test_a_text_file_for_a_numeric_model_exits_3(text_run: Path) -> None:
    numeric = SPEC.replace('input = { shape = [1], dtype = "string" }', "input = { shape = [4] }")
    numeric = numeric.replace('text = "review"\n', "")
    start = numeric.index("[[model.layers]]")
    numeric = numeric[:start] + numeric[numeric.index("[[model.layers]]", start + 1):]
    (text_run / "numeric.toml").write_text(numeric.replace('name = "reviews"', 'name = "numeric"'))
    import numpy as np

    np.savez(text_run / "numbers.npz", x=np.zeros((8, 4), np.float32), y=np.zeros(8))
    trained = dlcli("train", "numeric.toml", "--set", 'data.train="numbers.npz"', "--set", "train.epochs=1",
                    cwd=text_run)
    assert trained.returncode == 0, trained.stderr
    (text_run / "some.txt").write_text("hello\n")
    out = dlcli("predict", "runs/numeric", "some.txt", cwd=text_run)
    assert out.returncode == 3 and "this model takes numbers" in out.stderr
