"""Every --json line and --output .jsonl file is strict JSON, with one spelling of a non-finite value ("NaN",
"Infinity", "-Infinity", as dlcli/output_text.py says), whichever command writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SPEC = """name = "reg"
seed = 1
[data]
train = "train.csv"
validation = "huge.csv"
features = ["a", "b", "c"]
target = "y"
[model]
input = { shape = [3] }
[[model.layers]]
type = "dense"
units = 1
[train]
loss = "mse"
optimizer = "adam"
metrics = ["mae"]
epochs = 1
batch_size = 16
"""


def strict(line: str) -> Any:
    """json.loads that refuses the bare NaN, Infinity and -Infinity Python's json accepts (jq and JavaScript do)."""
    def refuse(token: str) -> None:
        raise ValueError(f"bare {token} is not JSON: {line}")
    return json.loads(line, parse_constant=refuse)


def dlcli(folder: Path, *args: str) -> list[Any]:
    """Run `dlcli ARGS --json` in a subprocess; every stdout line, parsed strictly."""
    result = subprocess.run([sys.executable, "-m", "dlcli", *args, "--json"], cwd=folder, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return [strict(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression run whose validation features are 1e20: the squared error overflows float32 to infinity."""
    folder = tmp_path_factory.mktemp("json")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).round(3)
    y = x @ [1.0, 2.0, 3.0]
    for name, scale in (("train.csv", 1.0), ("huge.csv", 1e20)):
        (folder / name).write_text("a,b,c,y\n" + "".join(",".join(map(str, [*row * scale, t])) + "\n"
                                                        for row, t in zip(x, y)))
    (folder / "reg.toml").write_text(SPEC)
    inputs = x[:3].astype(np.float32)
    inputs[1, 2] = np.nan
    np.save(folder / "nan.npy", inputs)
    return folder


def test_every_json_line_is_strict_json_with_non_finite_values_as_strings(folder: Path) -> None:
    events = dlcli(folder, "train", "reg.toml", "--run-dir", "runs/reg")
    assert [e["val_loss"] for e in events if e["event"] == "epoch"] == ["Infinity"]
    evaluated = dlcli(folder, "eval", "runs/reg", "--data", "huge.csv")
    assert evaluated[0]["loss"] == "Infinity"
    predicted = dlcli(folder, "predict", "runs/reg", "nan.npy", "--allow-nonfinite")
    assert [row["value"] == "NaN" for row in predicted] == [False, True, False]
    assert [row["nonfinite"] for row in predicted] == [False, True, False]
    dlcli(folder, "predict", "runs/reg", "nan.npy", "--allow-nonfinite", "--output", "p.jsonl")
    written = [strict(line) for line in (folder / "p.jsonl").read_text().splitlines()]
    assert written == predicted
    compared = dlcli(folder, "compare", "runs/reg", "runs/reg")  # read back from the run directory's files
    assert compared[0]["metrics"][0]["final"]["val_loss"] == "Infinity"
    for args in (("runs",), ("validate", "reg.toml")):
        assert dlcli(folder, *args), args
