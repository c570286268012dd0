"""K-fold validation (data.folds = K, or dlcli train --folds K): K ordinary runs, one a fold, in a K-fold folder.

    runs/<name>/          the K-fold folder, locked while a driver writes it
      kfold.json          what it is: the number of folds, the spec, when it began
      fold-1/ ... fold-K/ each an ordinary run directory (its own lock, run.json, checkpoints, history, summary),
                          whose spec is the K-fold spec with data.fold = i: it validates on the i-th fold
      summary.json        every fold's final values, and each value's mean and standard deviation over the folds

Every fold's run is trained, resumed (dlcli train runs/<name>/fold-2 --resume) and evaluated like any run. Resuming
the K-fold folder resumes each fold that has not finished, starts those that never began, and writes the summary.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from dlcli import __version__
from dlcli.errors import CheckpointError, SpecError
from dlcli.spec.models import RunSpec
from dlcli.train.callbacks import Callback
from dlcli.train.fit import fit_run
from dlcli.train.rundir import RunDirectory, checkpoint_path, write_json

MANIFEST = "kfold.json"


def is_kfold_folder(path: Path) -> bool:
    """Whether `path` is a K-fold folder (its manifest says so)."""
    return (Path(path) / MANIFEST).is_file()


def fit_folds(spec: RunSpec, folder: RunDirectory, reporters: Callable[[int], Any], notes: list[str],
              resume: bool = False, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train (or, resuming, finish) every fold of `spec` in the claimed K-fold `folder`; returns the summary.

    `reporters(i)` is a context manager giving the reporter of fold i's run (a Callback, closed when the run
    ends). `notes` collects what the user should be told: a fold resumed, finished already, or restarted.
    Resuming, `overrides` (--set) apply to each fold's saved spec, as `dlcli train RUN --resume --set` does.
    The folder's lock is released when this returns or raises.
    """
    assert spec.data.folds is not None
    try:
        if not resume:
            write_json(folder.path / MANIFEST, {"folds": spec.data.folds, "dlcli_version": __version__,
                                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                "spec": spec.model_dump(mode="json")})
        summaries = []
        for fold in range(1, spec.data.folds + 1):
            fold_spec = spec.model_copy(update={"data": spec.data.model_copy(update={"fold": fold})})
            with reporters(fold) as reporter:
                summaries.append(_fit_fold(fold_spec, folder.path / f"fold-{fold}", [reporter], notes, resume,
                                           overrides))
        summary = fold_summary(spec, folder.path, summaries)
        write_json(folder.path / "summary.json", summary)
        return summary
    finally:
        folder.close()


def _fit_fold(spec: RunSpec, path: Path, callbacks: list[Callback], notes: list[str], resume: bool,
              overrides: tuple[str, ...]) -> dict[str, Any]:
    """One fold's run: a new run directory, or (resuming) its run finished, continued, or begun again."""
    from dlcli.train.resume import resume_run  # resume imports fit, as this module does: no cycle at import

    if resume and (checkpoint_path(path, "last").is_file() or checkpoint_path(path, "previous").is_file()):
        summary = resume_run(path, overrides, None, callbacks, notes)
        if summary is not None:
            return summary
        try:  # finished already: its summary stands
            return dict(json.loads((path / "summary.json").read_text()))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: its run is finished but its summary.json cannot be read ({err}); "
                                  f"resume it with --set train.epochs=N for more epochs, which writes one") from None
    # a fold that never began, or was stopped before its first checkpoint: nothing in it can be resumed, so it
    # is begun again (an old start is moved aside and deleted when the new run finishes)
    began = path.is_dir() and any(path.iterdir())
    if began:
        notes.append(f"{path} had no checkpoint to resume; it was begun again")
    return fit_run(spec, RunDirectory.fresh(path, overwrite=began), callbacks)


def fold_summary(spec: RunSpec, folder: Path, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each fold's final values (the last epoch's logs), and each value's mean and (population) standard
    deviation over the folds, as numpy's std and scikit-learn's cross_val_score(...).std() give it."""
    names = list(dict.fromkeys(name for summary in summaries for name in summary.get("final", {})))
    per_fold = [{name: summary.get("final", {}).get(name) for name in names} for summary in summaries]
    statistics = {}
    for name in names:
        values = [row[name] for row in per_fold if isinstance(row[name], (int, float))]
        if values:
            mean = sum(values) / len(values)
            statistics[name] = {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))}
    return {"run": spec.name, "run_dir": str(folder), "folds": len(summaries),
            "fold_runs": [summary.get("run_dir") for summary in summaries],
            "epochs_run": [summary.get("epochs_run") for summary in summaries], "final": per_fold,
            "mean": {name: stat["mean"] for name, stat in statistics.items()},
            "std": {name: stat["std"] for name, stat in statistics.items()},
            "seconds": sum(summary.get("seconds", 0.0) for summary in summaries)}


def saved_spec(folder: Path, overrides: tuple[str, ...] = ()) -> RunSpec:
    """The spec a K-fold folder was begun with (its manifest), with `overrides` (--set) applied: what a fold
    that never began starts from when the folder is resumed."""
    from dlcli.spec.load import apply_overrides, validate_spec

    try:
        document = json.loads((folder / MANIFEST).read_text())["spec"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder / MANIFEST}: unreadable ({err}); this K-fold folder cannot be resumed")\
            from None
    return validate_spec(apply_overrides(document, list(overrides)), folder / MANIFEST)


def check_folds_spec(spec: RunSpec, workers: int) -> None:
    """What K-fold training cannot do yet, refused before anything is written."""
    if workers > 1:
        raise SpecError("data.folds: the folds train one after another in one process; drop --workers (each fold "
                        "can be trained on its own with --set data.fold=I and --workers N)")
