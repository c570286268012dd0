"""`dlcli tune --report DIR`: a study's trials again, its best trial, and the importance Optuna computes for each
parameter (its default evaluator, PED-ANOVA in Optuna 4 and later: the share of the variation in the metric
each parameter explains among the completed trials)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dlcli.tune.space import SearchSpace
from dlcli.tune.study import StudyPlace, finished_counts, load_study, require_optuna, trial_row


def study_report(directory: Path, storage: str | None = None, study_name: str | None = None) -> dict[str, Any]:
    """The report of the study in `directory` (or in `storage`): info, rows, best, importances, counts."""
    place = StudyPlace.of(directory, study_name or "", storage)
    study, record = load_study(place)
    space = SearchSpace.from_options(record.space, ())
    counts = finished_counts(study)
    report: dict[str, Any] = {
        "study": study.study_name, "study_dir": str(place.directory), "metric": record.metric,
        "direction": "max" if record.direction == "maximize" else "min", "params": record.space,
        "rows": [trial_row(t, space, place) for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"],
        **counts, "best": None, "importances": None, "importances_note": None}
    if counts["complete"]:
        best = study.best_trial
        report["best"] = {"number": best.number, "value": best.value, "params": space.values(dict(best.params))}
    report["importances"], report["importances_note"] = _importances(study, counts["complete"])
    return report


def _importances(study: Any, complete: int) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's parameter importances, or why there are none."""
    if complete < 2:
        return None, f"importances need at least 2 completed trials; the study has {complete}"
    optuna = require_optuna()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's notes on evaluators and small studies
            return dict(optuna.importance.get_param_importances(study)), None
    except (ValueError, RuntimeError) as err:  # e.g. every completed trial had the same values
        return None, f"Optuna could not compute importances: {err}"
