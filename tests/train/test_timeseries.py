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
from dlcli.errors import DataError
from dlcli.graph import build_model
from dlcli.spec.load import load_spec, validate_spec
from dlcli.train.datasets import evaluation_split
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


@pytest.fixture(scope="module")
def strided_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run over 40 rows (a = row, y = 100 x row): windows of 3 steps 2 rows apart, one every 3 rows, the target 2
    rows after a window's last row."""
    folder = tmp_path_factory.mktemp("strided")
    (folder / "series.csv").write_text("a,y\n" + "".join(f"{i},{100 * i}\n" for i in range(40)))
    doc = {"name": "strided", "seed": 1, "data": {"train": str(folder / "series.csv"), "timeseries": {
               "features": ["a"], "target": "y", "sequence_length": 3, "sampling_rate": 2, "sequence_stride": 3,
               "delay": 2, "test_split": 0.25}},
           "model": {"input": {"shape": [3, 1]}, "layers": [{"type": "flatten"}, {"type": "dense", "units": 1}]},
           "train": {"loss": "mse", "epochs": 1, "batch_size": 4}}
    fit_run(validate_spec(doc, Path("s.toml")), folder / "run", [])
    return folder


def test_each_forecast_names_the_row_its_window_ends_on_and_the_row_it_forecasts(strided_run: Path) -> None:
    run, table = str(strided_run / "run"), str(strided_run / "series.csv")
    # windows end every 3rd row back from the last (row 39): rows 6, 9, ..., 39; each forecasts 2 rows later
    ends = list(range(6, 40, 3))
    lines = CliRunner().invoke(cli, ["predict", run, table]).output.splitlines()
    assert [line.split()[:3] for line in lines] == [[f"index={i}", f"row={end}", f"target_row={end + 2}"]
                                                    for i, end in enumerate(ends)]
    records = [json.loads(line) for line in CliRunner().invoke(cli, ["predict", run, table, "--json"]).output.splitlines()]
    assert [(r["row"], r["target_row"]) for r in records] == [(end, end + 2) for end in ends]
    assert list(records[0]) == ["index", "row", "target_row", "value"]
    CliRunner().invoke(cli, ["predict", run, table, "--output", str(strided_run / "p.csv")])
    rows = (strided_run / "p.csv").read_text().splitlines()
    assert rows[0] == "row,target_row,value" and [r.split(",")[:2] for r in rows[1:]] == [[str(e), str(e + 2)]
                                                                                          for e in ends]
    CliRunner().invoke(cli, ["predict", run, table, "--output", str(strided_run / "p.jsonl")])
    jsonl = [json.loads(line) for line in (strided_run / "p.jsonl").read_text().splitlines()]
    assert [(r["row"], r["target_row"]) for r in jsonl] == [(end, end + 2) for end in ends]
    assert [r["value"] for r in jsonl] == pytest.approx([r["value"] for r in records])
    CliRunner().invoke(cli, ["predict", run, table, "--output", str(strided_run / "p.npz")])
    arrays = np.load(strided_run / "p.npz", allow_pickle=False)
    assert arrays["row"].tolist() == ends and arrays["target_row"].tolist() == [end + 2 for end in ends]


def test_allow_nonfinite_predicts_every_window_and_marks_those_that_read_a_gap(strided_run: Path) -> None:
    run = str(strided_run / "run")
    gaps = strided_run / "gaps.csv"  # cells a of rows 10 and 20 empty: read by the windows ending on rows 12, 24
    gaps.write_text("a,y\n" + "".join(f"{'' if i in (10, 20) else i},{100 * i}\n" for i in range(40)))
    refused = CliRunner().invoke(cli, ["predict", run, str(gaps)])
    assert refused.exit_code == 3
    assert refused.output.strip().endswith(
        "gaps.csv, the windows ending on lines 14, 26: 2 of 12 windows read NaN, infinity or a missing value; a "
        "model answers them with a forecast that means nothing: fill in those cells, or pass --allow-nonfinite to "
        "predict them anyway, marked nonfinite=true")
    clean = [json.loads(line) for line in CliRunner().invoke(
        cli, ["predict", run, str(strided_run / "series.csv"), "--json"]).output.splitlines()]
    marked = [json.loads(line) for line in CliRunner().invoke(
        cli, ["predict", run, str(gaps), "--json", "--allow-nonfinite"]).output.splitlines()]
    assert [r["row"] for r in marked if r["nonfinite"]] == [12, 24]
    assert [r["value"] for r in marked if not r["nonfinite"]] == [r["value"] for r in clean if r["row"] not in (12, 24)]
    CliRunner().invoke(cli, ["predict", run, str(gaps), "--allow-nonfinite", "--output", str(strided_run / "g.csv")])
    rows = (strided_run / "g.csv").read_text().splitlines()
    assert rows[0] == "row,target_row,value,nonfinite" and [r.split(",")[3] for r in rows[1:]].count("True") == 2


def test_eval_of_a_run_without_a_test_range_names_test_split(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{i},{i}\n" for i in range(20)))
    spec = validate_spec({"name": "no_test", "data": {"train": str(tmp_path / "t.csv"), "timeseries": {
        "target": "y", "sequence_length": 3}}, "model": {"input": {"shape": [3, 2]}, "layers": [
        {"type": "flatten"}, {"type": "dense", "units": 1}]}, "train": {"loss": "mse"}}, Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    with pytest.raises(DataError, match=r"^run: the spec has no test data: its time series keeps no test range "
                                        r"\(data.timeseries.test_split = 0\) and it names no data.test; pass --data "
                                        r"TABLE, or train with data.timeseries.test_split = 0.25, say$"):
        evaluation_split(spec, model, {}, Path("run"))
