"""The consistency a run directory keeps at every moment, checked on its files (SPEC.md: "its files always
describe one run"). Used after every fault the tests inject."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlcli.checkpoint import load_checkpoint


def _metadata(path: Path) -> dict[str, Any] | None:
    return load_checkpoint(path)[1] if path.is_file() else None


def _history(run: Path) -> list[dict[str, Any]]:
    path = run / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def assert_run_consistent(run: Path) -> None:
    """One run's files: one run_id everywhere; history never ahead of `last` and at most one epoch behind; `last`
    never names a best epoch that `best` does not hold; summary (when written) matches `last`; spec.json is the
    checkpoints' spec."""
    if not (run / "run.json").exists():  # a claim that failed before the run began leaves nothing behind
        assert not run.exists() or all(p.name == ".lock" for p in run.iterdir()), sorted(run.iterdir())
        return
    manifest = json.loads((run / "run.json").read_text())
    run_id = manifest["run_id"]
    folder = run / "checkpoints"
    last, best = _metadata(folder / "last.safetensors"), _metadata(folder / "best.safetensors")
    for name, metadata in (("last", last), ("best", best), ("previous", _metadata(folder / "previous.safetensors"))):
        if metadata is not None:
            assert metadata["run_id"] == run_id, f"{name} belongs to another run"
    if last is not None:
        assert last["spec"] == json.loads((run / "spec.json").read_text()), "spec.json is not the spec of last"
    history = _history(run)
    if last is None:
        assert best is None or history == best["history"][:len(history)]
        assert not (run / "summary.json").exists()
        return
    saved = last["history"]
    assert history == saved[:len(history)], "history.jsonl is not the history checkpoints/last holds"
    assert len(saved) - len(history) in (0, 1), (len(saved), len(history))
    if best is not None:
        recorded = last["best"]["best_epoch"]
        assert best["epoch"] >= recorded, f"last names best epoch {recorded}, best holds {best['epoch']}"
        if best["epoch"] > recorded:  # best written, last not yet: best is the epoch after last's
            assert best["epoch"] == last["epoch"] + 1, (best["epoch"], last["epoch"])
    summary_path = run / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        assert summary["run_id"] == run_id
        assert summary["epochs_run"] == last["epoch"] == len(history), "summary.json does not describe last"
        if best is not None:
            assert summary["best"]["best_epoch"] == best["epoch"]
