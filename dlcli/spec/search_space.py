"""The search space of `dlcli tune`: the [tune] table, and the grammar of one parameter's distribution.

A parameter is a key path into the spec (the key syntax of --set) and one of
    uniform(LOW, HIGH)       a float, evenly                loguniform(LOW, HIGH)  a float, evenly in log scale
    int(LOW, HIGH)           an integer, ends included      int(LOW, HIGH, log)    an integer, in log scale
    choice(VALUE, ...)       any TOML values, e.g. choice(0.0, 0.2), choice("relu", "tanh"), choice([64], [64, 32])
written after `--param KEY=` or as a string in [tune.params]. Only the grammar is here; Optuna, which samples
them, is imported by dlcli/tune/ alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from dlcli.errors import SpecError
from dlcli.registry import StrictSpec
from dlcli.spec.key_paths import KEY_PATH_FORM, TooDeepError, parse_key, parse_value

KINDS = ("uniform", "loguniform", "int", "choice")
EXAMPLES = "uniform(0.0, 0.5), loguniform(1e-4, 1e-2), int(32, 512), int(32, 512, log) or choice(0.0, 0.2, 0.5)"
_CALL = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)
_LOG_FLAG = re.compile(r",\s*log\s*$")


@dataclass
class Distribution:
    """One parameter's distribution: a range (uniform, loguniform, int) or a list of choices."""

    kind: Literal["uniform", "loguniform", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False  # loguniform, or int(..., log)
    choices: list[Any] = field(default_factory=list)
    expression: str = field(default="", compare=False)  # as the user wrote it

    def contains(self, value: Any) -> bool:
        """Whether `value` is one this distribution can give (a spec's own value, to try it first)."""
        if self.kind == "choice":
            return any(_same(value, choice) for choice in self.choices)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler: the choices, or each integer of an int range; None for floats."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        return None


def _same(a: Any, b: Any) -> bool:
    """Equal as TOML values: 1 and 1.0 are, true and 1 are not."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def parse_distribution(text: str) -> Distribution:
    """The distribution an expression writes; ValueError says what is wrong and shows the forms."""
    match = _CALL.match(text)
    if match is None or match.group(1) not in KINDS:
        raise ValueError(f"{text!r} is not a distribution; write {EXAMPLES}")
    kind, inside = match.group(1), match.group(2)
    log = kind == "int" and _LOG_FLAG.search(inside) is not None
    values = _arguments(_LOG_FLAG.sub("", inside) if log else inside)
    if kind == "choice":
        if len(values) < 2:
            raise ValueError(f"{text}: choice needs at least two values (a fixed value is a --set)")
        if any(_same(a, b) for i, a in enumerate(values) for b in values[:i]):
            raise ValueError(f"{text}: a value is listed twice")
        return Distribution("choice", choices=values, expression=text.strip())
    if len(values) != 2:
        form = "(LOW, HIGH) or (LOW, HIGH, log)" if kind == "int" else "(LOW, HIGH)"
        raise ValueError(f"{text}: {kind} takes {form}, got {len(values)} value{'s' if len(values) != 1 else ''}")
    low, high = values
    wanted = (int,) if kind == "int" else (int, float)
    if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{text}: {kind} takes two {'integers' if kind == 'int' else 'numbers'}, got "
                         f"{low!r} and {high!r}")
    if not all(math.isfinite(v) for v in values) or not low < high:
        raise ValueError(f"{text}: LOW must be below HIGH, got {low!r} and {high!r}")
    if (kind == "loguniform" or log) and low <= 0:
        raise ValueError(f"{text}: a log scale needs LOW above 0, got {low!r}")
    return Distribution(kind, low, high, log=log or kind == "loguniform",  # type: ignore[arg-type]
                        expression=text.strip())


def _arguments(inside: str) -> list[Any]:
    """The comma-separated TOML values inside the parentheses; a bare word is a string, as in --set."""
    items, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(inside):
        if quote:
            quote = "" if char == quote and inside[index - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(inside[start:index])
            start = index + 1
    items.append(inside[start:])
    if not inside.strip():
        return []
    try:
        return [parse_value(item.strip()) for item in items]
    except TooDeepError as err:
        raise ValueError(str(err)) from None


def _check_expression(text: str) -> str:
    parse_distribution(text)
    return text


def _check_key_path(key: str) -> str:
    try:
        parse_key(key)
    except SpecError:
        raise ValueError(f"not a key path; {KEY_PATH_FORM}") from None
    return key


SearchExpression = Annotated[str, AfterValidator(_check_expression)]
# validated on its own, so that an error names the key: tune.params."model.layers[x]"
SearchKey = Annotated[str, AfterValidator(_check_key_path)]


class TuneSpec(StrictSpec):
    """[tune]: what `dlcli tune` searches and how; its command-line options win over these keys."""

    params: dict[SearchKey, SearchExpression] = Field(
        {}, description="The search space: a key path (as --set writes it) -> uniform(LOW, HIGH), loguniform(LOW, "
                        "HIGH), int(LOW, HIGH[, log]) or choice(VALUE, ...).")
    metric: str | None = Field(None, description="The logged value to optimize (default: train.monitor).")
    direction: Literal["auto", "max", "min"] = Field("auto", description='Whether a higher (max) or lower (min) '
                                                                         'metric is better; auto guesses from '
                                                                         'the metric, as callbacks do.')
    trials: int = Field(20, gt=0, description="Trials in the study: completed, pruned and failed ones all count.")
    timeout: float | None = Field(None, gt=0, description="Start no new trial after this many seconds.")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="How Optuna picks each trial's values "
                                                                         "(seeded from the spec's seed).")
    pruner: Literal["median", "hyperband", "none"] = Field("median", description="How Optuna stops unpromising "
                                                                                 "trials after an epoch.")


def parse_param(item: str) -> tuple[str, Distribution]:
    """`--param KEY=EXPRESSION` -> (key, distribution); SpecError naming the option otherwise."""
    key, sep, expression = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--param {item}: expected KEY=DISTRIBUTION, e.g. --param "
                        "'train.optimizer.learning_rate=loguniform(1e-4, 1e-2)'")
    parse_key(key.strip(), "--param")
    try:
        return key.strip(), parse_distribution(expression)
    except ValueError as err:
        raise SpecError(f"--param {key.strip()}: {err}") from None
