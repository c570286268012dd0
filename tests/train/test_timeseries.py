"""Time series end to end: a normalization layer adapts on the training rows alone (no leakage from the future),
the book's Jena spec learns a known periodic signal far better than the last-value forecast, eval takes the
test range and predict forecasts from the latest windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.checkpoint import load_checkpoint
from dlcli.cli import commands  # noqa: F401 - registers the subcommands
from dlcli.cli.main import cli
from dlcli.spec.load import load_spec, validate_spec
from dlcli.train.fit import fit_run
from tests.jena_like import PERIOD, write_jena_like

REPO = Path(__file__).resolve().parents[2]


def test_normalization_adapts_on_the_training_rows_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, size=200)
    x[150] = x[190] = 1e6  # in the validation and test ranges: the future must not reach the statistics
    (tmp_path / "t.csv").write_text("x,y\n" + "".join(f"{v!r},{v / 2!r}\n" for v in x.tolist()))
    doc = {"name": "leak", "data": {"train": str(tmp_path / "t.csv"), "timeseries": {
               "target": "y", "sequence_length": 5, "validation_split": 0.25, "test_split": 0.25}},
           "model": {"input": {"shape": [5, 2]}, "layers": [{"type": "normalization"}, {"type": "flatten"},
                                                            {"type": "dense", "units": 1}]},
           "train": {"loss": "mse", "epochs": 1, "steps_per_epoch": 1, "batch_size": 8}}
    fit_run(validate_spec(doc, Path("s.toml")), tmp_path / "run", [])
    arrays, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    # the training windows read rows 0..99 (the last target is row 99): their values, each as often as a window
    # takes it, are what the layer saw
    starts = np.arange(0, 100 - 5)
    seen = np.stack([x, x / 2], axis=1).astype(np.float32)[starts[:, None] + np.arange(5)].reshape(-1, 2)
    np.testing.assert_allclose(arrays["state/normalization/mean"], seen.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(arrays["state/normalization/variance"], seen.var(axis=0, dtype=np.float64),
                               rtol=1e-5)
    assert abs(arrays["state/normalization/mean"][0] - 3.0) < 0.5  # 1e6 anywhere in the mix would show


def test_the_jena_spec_learns_a_periodic_signal_far_better_than_the_last_value(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    table = write_jena_like(tmp_path / "jena_climate_2009_2016.csv", rows=2400)
    (tmp_path / "jena.toml").write_text((REPO / "specs" / "jena_climate_gru.toml").read_text())
    # the book's spec, made small enough for a test: 24 hourly steps, 16 units, no dropout, Adam, 3 epochs
    overrides = ["data.timeseries.sequence_length=24", "model.input.shape=[24, 14]", "model.layers[1].units=16",
                 "model.layers[2].units=16", "model.layers[1].recurrent_dropout=0.0",
                 "model.layers[2].recurrent_dropout=0.0", "model.layers[3].rate=0.0", "train.epochs=3",
                 "train.batch_size=64", 'train.optimizer={ type = "adam", learning_rate = 0.01 }']
    summary = fit_run(load_spec(tmp_path / "jena.toml", overrides), tmp_path / "run", [])
    # the book's common-sense baseline: the temperature 24 hours (144 rows) later equals the last one seen
    temperature = table[:, 1]
    validation = np.arange(1200, 1800 - 144 - 23 * 6 - 1 + 1) + 23 * 6  # each validation window's last row
    baseline = np.abs(temperature[validation + 144] - temperature[validation]).mean()
    assert baseline > 8 and PERIOD == 100  # 144 rows is 1.44 periods: a day-old value is a poor forecast
    assert summary["final"]["val_mae"] < baseline / 4
    evaluated = json.loads(CliRunner().invoke(cli, ["eval", "run", "--json"]).output.splitlines()[-1])
    assert evaluated["data"] == "test" and evaluated["samples"] == 600 - 144 - 23 * 6
    assert evaluated["mae"] < baseline / 4
    predicted = CliRunner().invoke(cli, ["predict", "run", "jena_climate_2009_2016.csv", "--json"])
    forecasts = [json.loads(line)["value"] for line in predicted.output.splitlines()]
    assert len(forecasts) == 2400 - 23 * 6  # every window, the latest ending on the last row: a forecast ahead
