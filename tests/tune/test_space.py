"""The search space on Optuna: keys checked against the spec, values written with --set's machinery, choices of
lists and tables through Optuna and back, the spec's own values, the grid."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest

from dlcli.errors import SpecError
from dlcli.tune.best import best_document
from dlcli.tune.space import SearchSpace
from dlcli.tune.study import SearchRecord

DOCUMENT = {"name": "t", "data": {"dataset": "digits"},
            "model": {"input": {"shape": [64]}, "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                                           {"type": "dense", "units": 10}]},
            "train": {"loss": "mse", "optimizer": "adam"}}


def _space(*params: str, table: dict[str, str] | None = None) -> SearchSpace:
    return SearchSpace.from_options(table or {}, params)


def test_values_are_set_like_set_overrides_expanding_a_named_optimizer() -> None:
    space = _space("train.optimizer.learning_rate=loguniform(1e-4, 1e-2)", "model.layers[0].units=int(8, 64)")
    trial = space.apply(DOCUMENT, {"train.optimizer.learning_rate": 3e-3, "model.layers[0].units": 32})
    assert trial["train"]["optimizer"] == {"type": "adam", "learning_rate": 3e-3}
    assert trial["model"]["layers"][0] == {"type": "dense", "units": 32, "activation": "relu"}
    assert DOCUMENT["train"]["optimizer"] == "adam" and DOCUMENT["model"]["layers"][0]["units"] == 16  # a copy


def test_the_command_line_wins_over_the_tune_table() -> None:
    space = _space("model.layers[0].units=int(8, 64)", table={"model.layers[0].units": "int(1, 4)",
                                                               "train.epochs": "int(1, 3)"})
    assert space.expressions() == {"model.layers[0].units": "int(8, 64)", "train.epochs": "int(1, 3)"}


def test_an_empty_space_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="nothing to tune: give --param KEY=DISTRIBUTION"):
        _space()


@pytest.mark.parametrize("param,message", [
    ("model.layers[0].unit=int(8, 64)", r"--param model.layers\[0\].unit: not a key of the spec"),
    ("model.layers[5].units=int(8, 64)", r"--param model.layers\[5\].units: model.layers\[5\] does not exist"),
    ("train.optimizer.beta=uniform(0.8, 0.99)", "--param train.optimizer.beta: not a key of the spec"),
])
def test_a_key_the_spec_does_not_have_fails_before_any_trial(param: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _space(param).check_keys(copy.deepcopy(DOCUMENT))


@pytest.mark.parametrize("key,message", [
    ("model.layers[0].unit", 'tt.toml: tune.params."model.layers[0].unit": not a key of the spec'),
    ("model.layers[5].units", 'tt.toml: tune.params."model.layers[5].units": model.layers[5] does not exist'),
])
def test_a_key_of_the_tune_table_is_named_as_the_spec_file_writes_it(key: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        SearchSpace.from_options({key: "int(8, 64)"}, [], "tt.toml").check_keys(copy.deepcopy(DOCUMENT))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("param,message", [
    ("model.layers[0].units=uniform(2.5, 8.5)", "--param model.layers[0].units: uniform(2.5, 8.5) draws numbers with "
                                                "a fraction, and the key takes an integer; write int(3, 8)"),
    ("train.batch_size=loguniform(8, 64)", "--param train.batch_size: loguniform(8, 64) draws numbers with a "
                                           "fraction, and the key takes an integer; write int(8, 64, log)"),
    ("model.layers[2].kernel_size=uniform(1.5, 3.5)", "write int(2, 3)"),  # 3 or [3, 3]: integers either way
])
def test_a_float_range_on_an_integer_key_fails_before_any_trial(param: str, message: str) -> None:
    document = copy.deepcopy(DOCUMENT)
    document["model"]["layers"].append({"type": "conv1d", "filters": 2, "kernel_size": 3})
    with pytest.raises(SpecError) as info:
        _space(param).check_keys(document)
    assert message in str(info.value)


def test_a_float_range_on_a_number_key_and_an_integer_range_on_an_integer_key_are_fine() -> None:
    _space("train.optimizer.learning_rate=uniform(1e-4, 1e-2)", "model.layers[0].units=int(8, 64)",
           "train.optimizer.beta_1=choice(0.9, 1)").check_keys(copy.deepcopy(DOCUMENT))


def test_choices_of_lists_and_tables_go_through_optuna_as_text_and_come_back() -> None:
    space = _space('train.optimizer=choice({ type = "sgd", momentum = 0.9 }, "adam")', "model.input.shape=choice([64], "
                   "[8, 8])")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        stored = space.sample(trial)
        assert all(isinstance(v, str) for v in stored.values())  # TOML text: Optuna keeps scalars only
        values = space.values(stored)
        seen.append((str(values["train.optimizer"]), str(values["model.input.shape"])))
        study.tell(trial, 0.0)
        document = space.apply(DOCUMENT, stored)
        assert document["train"]["optimizer"] in ({"type": "sgd", "momentum": 0.9}, "adam")
        assert document["model"]["input"]["shape"] in ([64], [8, 8])
    assert len(set(seen)) == 4  # every combination came up, each mapped back to its own value


def test_the_spec_values_inside_the_space_are_tried_first() -> None:
    space = _space("model.layers[0].units=int(8, 64)", "train.optimizer.learning_rate=loguniform(1e-4, 1e-2)",
                   "model.layers[1].units=choice(2, 3)", "train.batch_size=choice(16, 64)")
    resolved = {"model": {"layers": [{"units": 16}, {"units": 10}]}, "train": {"optimizer": {"learning_rate": 0.001},
                                                                              "batch_size": 32}}
    # units 16 and the optimizer's default rate are in the space; 10 and 32 are not: those are sampled
    assert space.spec_values(resolved) == {"model.layers[0].units": 16, "train.optimizer.learning_rate": 0.001}


def test_the_grid_takes_choices_and_integer_ranges_only() -> None:
    assert _space("model.layers[0].units=int(8, 10)", "train.epochs=choice(1, 2)").grid() == {
        "model.layers[0].units": [8, 9, 10], "train.epochs": [1, 2]}
    with pytest.raises(SpecError, match=r"--sampler grid: train.optimizer.learning_rate = loguniform\(1e-4, 1e-2\) is "
                                        "a float range, which has no grid"):
        _space("train.optimizer.learning_rate=loguniform(1e-4, 1e-2)").grid()


def test_best_toml_keeps_relative_data_paths_pointing_at_the_same_files(tmp_path: Path) -> None:
    space = _space("model.layers[0].units=int(8, 64)")
    document = {**copy.deepcopy(DOCUMENT), "data": {"train": "data/train.npz", "test": "/abs/test.npz"}}
    record = SearchRecord(document, str(tmp_path / "specs" / "mine.toml"), space.expressions(), "loss", "minimize")
    best = best_document(record, space, {"model.layers[0].units": 32}, tmp_path / "runs" / "mine-tune")
    assert best["data"] == {"train": "../../specs/data/train.npz", "test": "/abs/test.npz"}
    assert best["model"]["layers"][0]["units"] == 32 and "tune" not in best
    assert document["data"]["train"] == "data/train.npz"  # the record is left as it was
