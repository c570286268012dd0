"""The search space on Optuna: each --param or [tune.params] key with its distribution, sampled per trial and
written into a copy of the spec document with the --set machinery (spec/load.py's set_value), one home for
key paths."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from dlcli.errors import SpecError
from dlcli.spec.keys import toml_value
from dlcli.spec.key_paths import display_key, parse_key
from dlcli.spec.load import key_is_known, key_takes_only_integers, set_value
from dlcli.spec.search_space import Distribution, parse_distribution, parse_param

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import Trial

_SCALARS = (bool, int, float, str)  # what Optuna stores as a choice itself; a list or a table goes as its TOML text


class SearchSpace:
    """Key path -> distribution, in the order given: the [tune.params] table, then --param (which wins); and
    where each key was written, as its errors name it."""

    def __init__(self, params: dict[str, Distribution], origins: dict[str, str] | None = None) -> None:
        self.params = params
        self.origins = {key: f"--param {key}" for key in params} | (origins or {})

    @classmethod
    def from_options(cls, table: dict[str, str], options: list[str] | tuple[str, ...],
                     spec_file: str | None = None) -> SearchSpace:
        """The space of a spec's [tune.params] and the command line's --param KEY=DISTRIBUTION items; `spec_file`
        (the spec's file name) is named in errors about a key of its table."""
        params = {key: parse_distribution(text) for key, text in table.items()}
        # a table key is quoted as the file writes it: tune.params."model.layers[0].units"
        in_file = f"{spec_file}: " if spec_file else ""
        origins = {key: in_file + display_key(["tune", "params", key]) for key in table}
        for item in options:
            key, distribution = parse_param(item)
            params[key], origins[key] = distribution, f"--param {key}"
        if not params:
            raise SpecError("nothing to tune: give --param KEY=DISTRIBUTION (e.g. --param "
                            "'train.optimizer.learning_rate=loguniform(1e-4, 1e-2)') or a [tune.params] table")
        return cls(params, origins)

    def expressions(self) -> dict[str, str]:
        """Each key's distribution as written (what a study records, to recognise its space again)."""
        return {key: distribution.expression for key, distribution in self.params.items()}

    def check_keys(self, document: dict[str, Any]) -> None:
        """Every key is one the spec has, and a float range is not on an integer key: such a mistake fails before
        the first trial, not as every trial."""
        trial = copy.deepcopy(document)
        for key, distribution in self.params.items():
            set_value(trial, key, _representative(distribution), "--param", self.origins[key])
        unknown = [key for key in self.params if not key_is_known(trial, key, "--param")]
        if unknown:
            raise SpecError(f"{self.origins[unknown[0]]}: not a key of the spec (keys are written as in --set and "
                            "in error messages, e.g. train.optimizer.learning_rate or model.layers[2].units; "
                            "`dlcli list layers dense` shows a layer's keys)")
        for key, distribution in self.params.items():
            # every value such a range draws has a fraction: each trial would fail, so the study is refused now
            if distribution.kind in ("uniform", "loguniform") and key_takes_only_integers(trial, key, "--param"):
                raise SpecError(f"{self.origins[key]}: {distribution.expression} draws numbers with a fraction, and "
                                f"the key takes an integer; write {_integer_range(distribution)} instead")

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution for each key."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, BaseDistribution] = {}
        for key, d in self.params.items():
            if d.kind == "choice":
                out[key] = CategoricalDistribution([_stored(choice, d) for choice in d.choices])
            elif d.kind == "int":
                out[key] = IntDistribution(int(d.low), int(d.high), log=d.log)
            else:
                out[key] = FloatDistribution(d.low, d.high, log=d.log)
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's points per key; SpecError for a float range, which has no grid."""
        floats = [key for key, d in self.params.items() if d.grid() is None]
        if floats:
            raise SpecError(f"--sampler grid: {floats[0]} = {self.params[floats[0]].expression} is a float range, "
                            "which has no grid; give choice(...) or int(...), or use --sampler tpe or random")
        return {key: [_stored(value, d) for value in d.grid() or []] for key, d in self.params.items()}

    def sample(self, trial: Trial) -> dict[str, Any]:
        """This trial's values, asked of Optuna (its sampler decides), as Optuna stores them."""
        distributions = self.distributions()
        return {key: _suggest(trial, key, distributions[key]) for key in self.params}

    def values(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The spec values of a trial's Optuna parameters (a list or table choice back from its TOML text)."""
        out = {}
        for key, value in stored.items():
            d = self.params.get(key)
            if d is not None and d.kind == "choice" and not _all_scalars(d):
                value = next(choice for choice in d.choices if toml_value(choice) == value)
            out[key] = value
        return out

    def apply(self, document: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
        """A copy of `document` with a trial's values set at their keys."""
        trial = copy.deepcopy(document)
        for key, value in self.values(stored).items():
            set_value(trial, key, value, "--param")
        return trial

    def spec_values(self, resolved: dict[str, Any]) -> dict[str, Any]:
        """The values the spec itself has at the searched keys, where the space contains them (as Optuna stores
        them): the first trial trains the spec as written, so the best is never worse than the spec.
        `resolved` is the validated spec's model_dump, so that defaults the file leaves out count too."""
        found = {}
        for key, d in self.params.items():
            value = _lookup(resolved, key)
            if value is not _MISSING and d.contains(value):
                found[key] = _stored(value, d)
        return found


def _integer_range(distribution: Distribution) -> str:
    """The int(...) distribution of a float range's integers: loguniform(8, 64) -> int(8, 64, log)."""
    low, high = math.ceil(distribution.low), math.floor(distribution.high)
    bounds = f"{low}, {high}" if low < high else "LOW, HIGH"
    return f"int({bounds}{', log' if distribution.log else ''})"


def _suggest(trial: Trial, key: str, distribution: BaseDistribution) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(key, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(key, distribution.low, distribution.high, log=distribution.log)


def _all_scalars(distribution: Distribution) -> bool:
    return all(isinstance(choice, _SCALARS) for choice in distribution.choices)


def _stored(value: Any, distribution: Distribution) -> Any:
    """A value as Optuna keeps it: itself, or its TOML text when the choices include a list or a table."""
    if distribution.kind != "choice" or _all_scalars(distribution):
        return value
    return toml_value(value)


def _representative(distribution: Distribution) -> Any:
    return distribution.choices[0] if distribution.kind == "choice" else (
        int(distribution.low) if distribution.kind == "int" else distribution.low)


_MISSING = object()


def _lookup(document: Any, key: str) -> Any:
    node = document
    for part in parse_key(key, "--param"):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return _MISSING
        elif not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node
