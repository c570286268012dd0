"""The search space's grammar (--param and [tune.params]) and the [tune] table."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from dlcli.errors import SpecError
from dlcli.spec.load import validate_spec
from dlcli.spec.search_space import Distribution, parse_distribution, parse_param

SPEC = {"name": "t", "data": {"dataset": "digits"}, "model": {"input": {"shape": [64]}, "layers": [
    {"type": "dense", "units": 8}]}, "train": {"loss": "mse"}}


@pytest.mark.parametrize("text,expected", [
    ("uniform(0, 0.5)", Distribution("uniform", 0, 0.5)),
    ("loguniform(1e-4, 1e-2)", Distribution("loguniform", 1e-4, 1e-2, log=True)),
    ("int(32, 512)", Distribution("int", 32, 512)),
    ("int(32,512,log)", Distribution("int", 32, 512, log=True)),
    ("  int( 1 , 4 , log )  ", Distribution("int", 1, 4, log=True)),
    ("choice(0.0, 0.2, 0.5)", Distribution("choice", choices=[0.0, 0.2, 0.5])),
    ('choice("relu", tanh)', Distribution("choice", choices=["relu", "tanh"])),  # a bare word, as in --set
    ('choice([64, 32], [128], { type = "adam", amsgrad = true })',
     Distribution("choice", choices=[[64, 32], [128], {"type": "adam", "amsgrad": True}])),
    ("choice(true, 1)", Distribution("choice", choices=[True, 1])),  # TOML tells them apart
])
def test_every_form_parses_to_its_distribution(text: str, expected: Distribution) -> None:
    parsed = parse_distribution(text)
    assert parsed == expected and parsed.expression == text.strip()


@pytest.mark.parametrize("text,message", [
    ("normal(0, 1)", "is not a distribution; write uniform"),
    ("uniform(1)", "uniform takes (LOW, HIGH), got 1 value"),
    ("int(1, 2, 3)", "int takes (LOW, HIGH) or (LOW, HIGH, log), got 3 values"),
    ("int(1.5, 4)", "int takes two integers, got 1.5 and 4"),
    ("uniform(0.5, 0.1)", "LOW must be below HIGH, got 0.5 and 0.1"),
    ("loguniform(0, 1)", "a log scale needs LOW above 0, got 0"),
    ("int(0, 8, log)", "a log scale needs LOW above 0"),
    ("uniform(nan, 1)", "LOW must be below HIGH"),
    ("choice(1)", "choice needs at least two values"),
    ("choice(1, 2, 1.0)", "a value is listed twice"),
    ("uniform(true, 2)", "uniform takes two numbers"),
])
def test_a_wrong_distribution_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_distribution(text)
    assert message in str(info.value)


def test_contains_and_grid() -> None:
    assert parse_distribution("int(2, 5)").grid() == [2, 3, 4, 5]
    assert parse_distribution("uniform(0, 1)").grid() is None
    assert parse_distribution("loguniform(1e-4, 1e-2)").contains(3e-3)
    assert not parse_distribution("loguniform(1e-4, 1e-2)").contains(3e-2)
    assert not parse_distribution("int(2, 5)").contains(3.0) and parse_distribution("int(2, 5)").contains(3)
    assert parse_distribution("choice(0.0, 0.5)").contains(0) and not parse_distribution("choice(1, 2)").contains(True)


def test_param_option_names_the_key_in_its_errors() -> None:
    assert parse_param("model.layers[0].units=int(8, 64)") == ("model.layers[0].units", Distribution("int", 8, 64))
    with pytest.raises(SpecError, match=r"--param model.layers\[0\].units: int\(8\): int takes"):
        parse_param("model.layers[0].units=int(8)")
    with pytest.raises(SpecError, match="--param units: expected KEY=DISTRIBUTION"):
        parse_param("units")
    with pytest.raises(SpecError, match="--param model..units: not a key path"):
        parse_param("model..units=int(1, 2)")


def test_the_tune_table_is_validated_with_the_spec() -> None:
    spec = validate_spec({**copy.deepcopy(SPEC), "tune": {"params": {"model.layers[0].units": "int(8, 64)"},
                                                          "trials": 5}}, Path("t.toml"))
    assert spec.tune is not None and spec.tune.trials == 5 and spec.tune.sampler == "tpe"
    with pytest.raises(SpecError) as info:
        validate_spec({**copy.deepcopy(SPEC), "tune": {"params": {"model.layers[0].units": "int(64, 8)"},
                                                       "sampler": "bayes", "trial": 3}}, Path("t.toml"))
    message = str(info.value)
    assert "t.toml has 3 problems" in message
    assert 'tune.params."model.layers[0].units": int(64, 8): LOW must be below HIGH' in message  # quoted, as written
    assert "tune.sampler: must be one of 'tpe', 'random' or 'grid', got 'bayes'" in message
    assert "tune.trial: unknown key; allowed keys: direction, metric, params, pruner, sampler, timeout, trials " \
           "(did you mean trials?)" in message


def test_a_tune_table_key_must_be_a_key_path() -> None:
    with pytest.raises(SpecError, match=r'^t.toml: tune.params."model.layers\[x\]": not a key path; write it like '):
        validate_spec({**copy.deepcopy(SPEC), "tune": {"params": {"model.layers[x]": "int(1, 2)"}}}, Path("t.toml"))
