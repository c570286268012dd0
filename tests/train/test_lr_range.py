"""The learning-rate range test (dlcli lr-find): rates, smoothing and the suggestion by hand, the spec's model left
untouched (Lightning#6675), the stop at a blow-up, and the command line."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli import commands  # noqa: F401 - adds the subcommands
from dlcli.cli.main import cli
from dlcli.graph import build_model
from dlcli.spec.load import load_spec, validate_spec
from dlcli.train.datasets import load_splits
from dlcli.train.fit import adapt_preprocessing
from dlcli.train.lr_range import exponential_rates, find_learning_rate, range_test, smooth, steepest
from dlcli.train.run_checkpoints import model_arrays
from dlcli.train.streams import Streams

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "specs" / "digits_mlp.toml"


def test_rates_grow_exponentially_from_start_to_end() -> None:
    np.testing.assert_allclose(exponential_rates(1e-6, 1.0, 7), [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12)


def test_smoothing_is_fastais_bias_corrected_moving_average() -> None:
    # beta 0.98: 0.02 * 1 / 0.02 = 1; (0.98 * 0.02 + 0.02 * 2) / (1 - 0.98^2) = 0.0596 / 0.0396
    assert smooth([1.0, 2.0]) == pytest.approx([1.0, 0.0596 / 0.0396], rel=1e-12)
    assert smooth([3.0] * 5) == pytest.approx([3.0] * 5, rel=1e-12)


def test_the_suggestion_is_the_steepest_descent_before_the_lowest_loss() -> None:
    rates = [10.0 ** (i / 10) for i in range(40)]  # log10 steps of 0.1
    losses = [5.0] * 40
    for i, drop in zip(range(10, 20), [0.1, 0.1, 0.2, 0.9, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1]):
        losses[i + 1:] = [value - drop for value in losses[i + 1:]]  # the biggest fall is from step 13 to 14
    losses[22:] = [9.0, 3.5, *([20.0] * 16)]  # after the lowest (2.9 at index 20): a bigger fall, a blow-up
    # the first tenth (4) and last five points are left out; then everything after the lowest
    assert steepest(rates, losses) == rates[13]
    falling = [8.0, 7.0, 5.0, 4.5, 4.0, 3.9, 3.8, 3.7]  # 8 points: none skipped at the start, 5 at the end
    assert steepest(rates[:8], falling) == rates[1]  # from 7 to 5 is the biggest fall of the first three
    assert steepest(rates[:7], falling[:7]) is None  # 2 points left: no slope to compare


def _digits_with_batch_norm() -> tuple:
    spec = load_spec(DIGITS, ["train.batch_size=16"])
    document = spec.model_dump(mode="json")
    document["model"]["layers"].insert(2, {"type": "batch_normalization"})
    spec = validate_spec(document, DIGITS)
    streams = Streams(spec.seed)
    model = build_model(spec.model, streams.model, spec)
    splits = load_splits(spec, model, streams.split)
    adapt_preprocessing(model, splits.train)
    return spec, model, splits, streams


def test_the_models_weights_and_state_are_untouched_afterwards() -> None:
    spec, model, splits, streams = _digits_with_batch_norm()
    before = {name: array.copy() for name, array in model_arrays(model, None).items()}
    assert any(name.startswith("state/") for name in before)  # batch norm's moving statistics count too
    result = range_test(model, splits.train, spec, 1e-4, 1.0, 30, streams.shuffle)
    after = model_arrays(model, None)
    assert set(after) == set(before)
    for name, array in before.items():
        np.testing.assert_array_equal(after[name], array, err_msg=name)
    assert len(result.losses) == 30 and len(set(result.losses)) > 1  # its copy did train


def test_the_test_stops_once_the_smoothed_loss_blows_up() -> None:
    spec = load_spec(DIGITS, ["train.optimizer=sgd"])
    result = find_learning_rate(spec, 1e-2, 1e6, 100)
    assert result.stopped == "blew_up" and len(result.rates) < 100
    last = result.smoothed[-1]
    assert not math.isfinite(last) or last > 4 * min(result.smoothed[:-1])


def _lr_find(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["lr-find", str(DIGITS), *args])
    return result.exit_code, result.stdout


def test_lr_find_prints_the_curve_the_suggestion_and_a_ready_set_line(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _lr_find("--steps", "40", "--end", "0.1", "--json")
    assert code == 0
    record = json.loads(out)
    assert record["event"] == "lr_find" and record["steps_run"] == 40 and len(record["smoothed"]) == 40
    assert record["suggested"] == steepest(record["rates"], record["smoothed"])
    rounded = float(f"{record['suggested']:.3g}")
    assert record["set"] == f"train.optimizer.learning_rate={rounded}"
    code, out = _lr_find("--steps", "40", "--end", "0.1", "--set", "train.batch_size=64")
    lines = out.splitlines()
    assert code == 0 and "learning rate (log scale)" in out and "*" in out
    suggested = re.fullmatch(r"40 steps; suggested learning rate (\S+) \(steepest descent of the smoothed loss\)",
                             lines[-2])
    assert suggested is not None
    assert lines[-1] == f"dlcli train {DIGITS} --set train.batch_size=64 --set train.optimizer.learning_rate=" \
                        f"{suggested.group(1)}"
    assert not (tmp_path / "runs").exists()  # a range test writes no run


def test_lr_find_writes_a_plot_file_with_the_plot_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _lr_find("--steps", "20", "--output", str(tmp_path / "curve.png"))
    assert code == 0 and (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no plot extra
    code, _ = _lr_find("--steps", "20", "--output", str(tmp_path / "again.png"))
    assert code == 2 and not (tmp_path / "again.png").exists()
    result = CliRunner().invoke(cli, ["lr-find", str(DIGITS), "--steps", "20", "--output", str(tmp_path / "a.png")])
    assert "writing a plot needs matplotlib, which is not installed: pip install 'dlcli[plot]'" in result.stderr


@pytest.mark.parametrize("args,code,message", [
    (("--start", "1", "--end", "0.1"), 2, "--start 1.0 and --end 0.1: the rate grows from --start to --end"),
    (("--start", "1e4", "--end", "1e9", "--set", "train.optimizer=sgd"), 5, "too soon to suggest a rate"),
    (("--set", 'train.freeze=["*"]'), 2, "the model has no trainable weights (train.freeze or trainable = false "
                                       "freezes every one)"),
])
def test_lr_find_errors(args: tuple[str, ...], code: int, message: str) -> None:
    result = CliRunner().invoke(cli, ["lr-find", str(DIGITS), *args])
    assert result.exit_code == code and message in result.stderr
