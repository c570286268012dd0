"""What dlcli tune prints, from a scripted search: the plain lines, the JSON events (and their replay through
dispatch, as a parallel search relays its workers'), the live table and the report."""

from __future__ import annotations

import io
import json
from typing import Any

from dlcli.report.tuning import JsonTrials, LiveTrials, PlainTrials, print_report
from dlcli.tune.events import TuneObserver, dispatch

PARAMS = {"train.optimizer.learning_rate": "loguniform(1e-4, 1e-2)", "model.layers[1].units": "int(16, 128, log)"}
INFO = {"study": "digits-mlp", "study_dir": "runs/digits-mlp-tune",
        "storage": "sqlite:///runs/digits-mlp-tune/study.db", "metric": "val_accuracy", "direction": "max",
        "sampler": "tpe", "pruner": "median", "trials": 2, "params": PARAMS, "rows": [], "notes": []}
FIRST = {"number": 0, "params": {"train.optimizer.learning_rate": 0.003, "model.layers[1].units": 64}, "resumed": False,
         "run_dir": "runs/digits-mlp-tune/trial-0"}
FIRST_END = {"number": 0, "state": "complete", "value": 0.8889, "params": FIRST["params"], "seconds": 1.5,
             "epochs_run": 3, "reason": None, "run_dir": "runs/digits-mlp-tune/trial-0"}
SECOND_END = {"number": 1, "state": "pruned", "value": 0.1875, "params": {"train.optimizer.learning_rate": 0.0002,
                                                                          "model.layers[1].units": 124},
              "seconds": 0.3, "epochs_run": 1, "reason": "pruned after epoch 1: val_accuracy = 0.1875",
              "run_dir": "runs/digits-mlp-tune/trial-1"}
SUMMARY = {"study": "digits-mlp", "study_dir": "runs/digits-mlp-tune", "trials": 2, "complete": 1, "pruned": 1,
           "fail": 0, "seconds": 2.25, "best": {"number": 0, "value": 0.8889, "params": FIRST["params"]},
           "best_toml": "runs/digits-mlp-tune/best.toml"}


def replay(observer: TuneObserver) -> None:
    """A two-trial search as its observer hears it."""
    observer.on_study_begin(INFO)
    observer.on_trial_begin(FIRST)
    observer.on_trial_epoch(0, 1, 3, 0.75)
    observer.on_trial_end(FIRST_END)
    observer.on_trial_end(SECOND_END)
    observer.on_study_end(SUMMARY)
    observer.close()


def test_plain_lines_of_a_scripted_search() -> None:
    stream = io.StringIO()
    replay(PlainTrials(stream))
    assert stream.getvalue().splitlines() == [
        "study study=digits-mlp study_dir=runs/digits-mlp-tune storage=sqlite:///runs/digits-mlp-tune/study.db "
        "metric=val_accuracy direction=max sampler=tpe pruner=median trials=2 "
        'param.train.optimizer.learning_rate="loguniform(1e-4, 1e-2)" param.model.layers[1].units="int(16, 128, log)"',
        "trial=0 start train.optimizer.learning_rate=0.003 model.layers[1].units=64",
        "trial=0 state=complete value=0.8889 epochs=3 seconds=1.5 train.optimizer.learning_rate=0.003 "
        "model.layers[1].units=64",
        "trial=1 state=pruned value=0.1875 epochs=1 seconds=0.3 train.optimizer.learning_rate=0.0002 "
        'model.layers[1].units=124 reason="pruned after epoch 1: val_accuracy = 0.1875"',
        "end study=digits-mlp study_dir=runs/digits-mlp-tune trials=2 complete=1 pruned=1 fail=0 seconds=2.25 "
        "best.number=0 best.value=0.8889 best.params.train.optimizer.learning_rate=0.003 "
        "best.params.model.layers[1].units=64 best_toml=runs/digits-mlp-tune/best.toml",
    ]


class Recorder(TuneObserver):
    """Keeps every hook call, to compare a replay with the original."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_study_begin(self, info: dict[str, Any]) -> None:
        self.calls.append(("study", info))

    def on_trial_begin(self, row: dict[str, Any]) -> None:
        self.calls.append(("begin", row))

    def on_trial_epoch(self, number: int, epoch: int, epochs: int, value: float | None) -> None:
        self.calls.append(("epoch", (number, epoch, epochs, value)))

    def on_trial_end(self, row: dict[str, Any]) -> None:
        self.calls.append(("end", row))

    def on_study_end(self, summary: dict[str, Any]) -> None:
        self.calls.append(("done", summary))


def test_json_events_replay_through_dispatch_to_the_same_calls() -> None:
    stream = io.StringIO()
    replay(JsonTrials(stream))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["study_start", "trial_start", "trial_epoch", "trial_end", "trial_end",
                                             "study_end"]
    direct, relayed = Recorder(), Recorder()
    replay(direct)
    assert all(dispatch(relayed, record) for record in records)
    assert relayed.calls == direct.calls
    assert not dispatch(relayed, {"event": "error", "message": "x"})


def test_the_live_table_shows_every_trial_and_the_best() -> None:
    stream = io.StringIO()
    live = LiveTrials(stream)
    live.console.width = 160
    replay(live)
    text = stream.getvalue()
    final = text[text.rfind("\n", 0, text.rindex("seconds")):]  # from the last table's header on
    assert "model.layers[1].units" in final and "val_accuracy" in final
    assert "0.8889" in final and "complete" in final and "pruned" in final and "0.1875" in final
    assert "best: trial 0 value=0.8889 train.optimizer.learning_rate=0.003 model.layers[1].units=64" in final
    assert "1 complete, 1 pruned, 0 failed in 2.25 s; train it with: dlcli train runs/digits-mlp-tune/best.toml" \
        in final


def test_the_report_in_plain_lines() -> None:
    report = {"study": "digits-mlp", "metric": "val_accuracy", "direction": "max",
              "study_dir": "runs/digits-mlp-tune", "params": PARAMS, "rows": [FIRST_END, SECOND_END], "complete": 1,
              "pruned": 1, "fail": 0, "best": SUMMARY["best"], "importances_note": None,
              "importances": {"train.optimizer.learning_rate": 0.9, "model.layers[1].units": 0.1}}
    stream = io.StringIO()
    print_report(report, "plain", stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "study study=digits-mlp metric=val_accuracy direction=max study_dir=runs/digits-mlp-tune"
    assert lines[1].startswith("trial=0 state=complete") and lines[2].startswith("trial=1 state=pruned")
    assert lines[3] == ("best number=0 value=0.8889 params.train.optimizer.learning_rate=0.003 "
                        "params.model.layers[1].units=64")
    assert lines[4:] == ["importance param=train.optimizer.learning_rate value=0.9",
                         "importance param=model.layers[1].units value=0.1"]
