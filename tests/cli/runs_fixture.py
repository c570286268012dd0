"""Small runs made once for the tests of the commands that read run directories (runs, compare, plot, log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner, Result

from dlcli.cli import commands  # noqa: F401 - adds the subcommands to the group
from dlcli.cli.main import cli

SPEC = """name = "blobs"
seed = 3
[data]
train = "blobs.csv"
target = "species"
validation_split = 0.25
[model]
input = {{ shape = [2] }}
[[model.layers]]
type = "dense"
units = 8
activation = "relu"
[[model.layers]]
type = "dense"
units = 3
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
optimizer = {{ type = "adam", learning_rate = {rate} }}
metrics = ["accuracy"]
epochs = {epochs}
batch_size = 16
"""
CLASSES = ("cat", "dog", "fox")


def invoke(*args: str) -> Result:
    """`dlcli ARGS` in this process (the commands that only read run directories are quick)."""
    return CliRunner().invoke(cli, list(args))


def write_blobs_csv(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Three classes named cat, dog and fox around three centres, as CSV with a string target column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])[y] + rng.normal(scale=0.9, size=(n, 2))
    rows = "".join(f"{a:.4f},{b:.4f},{CLASSES[k]}\n" for (a, b), k in zip(x, y))
    path.write_text("a,b,species\n" + rows)
    return path


def write_spec(folder: Path, rate: float = 0.01, epochs: int = 4) -> Path:
    write_blobs_csv(folder / "blobs.csv")
    spec = folder / "blobs.toml"
    spec.write_text(SPEC.format(rate=rate, epochs=epochs))
    return spec


def train(spec: Path, run: Path, *extra: str) -> Result:
    result = invoke("train", str(spec), "--run-dir", str(run), "--quiet", *extra)
    assert result.exit_code == 0, result.output
    return result


def history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
