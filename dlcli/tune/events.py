"""What a search tells its observers (report/ prints it): the study starting, each trial's start, epochs and
end, and the study's end. `dispatch` replays a JSON record of one of these events, so that a parallel search's
worker processes report through the parent's observer.

Payloads are plain JSON-able dicts:
  on_study_begin(info): study, storage, study_dir, metric, direction, sampler, pruner, trials (the budget),
      params ({key: distribution}), jobs, and rows: the trials the study already holds
  on_trial_begin(row): number, params ({key: value}), resumed (true when --resume-trials took it back)
  on_trial_epoch(number, epoch, epochs, value): the metric after an epoch of a running trial
  on_trial_end(row): number, state ("complete", "pruned" or "fail"), value, params, seconds, epochs_run,
      reason (why it failed or was pruned), run_dir
  on_study_end(summary): best ({number, value, params}), best_toml, complete, pruned, fail, trials, seconds
"""

from __future__ import annotations

from typing import Any


class TuneObserver:
    """Receives a search's events; every hook is optional."""

    def on_study_begin(self, info: dict[str, Any]) -> None:
        """The study is open and about to run trials."""

    def on_trial_begin(self, row: dict[str, Any]) -> None:
        """A trial has its values and starts training."""

    def on_trial_epoch(self, number: int, epoch: int, epochs: int, value: float | None) -> None:
        """A running trial finished an epoch."""

    def on_trial_end(self, row: dict[str, Any]) -> None:
        """A trial completed, was pruned, or failed."""

    def on_study_end(self, summary: dict[str, Any]) -> None:
        """No trial is left to run."""

    def close(self) -> None:
        """Finish the output (a live table); safe to call more than once."""

    def __enter__(self) -> TuneObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EVENTS = {"study_start": "on_study_begin", "trial_start": "on_trial_begin", "trial_epoch": "on_trial_epoch",
          "trial_end": "on_trial_end", "study_end": "on_study_end"}


def dispatch(observer: TuneObserver, record: dict[str, Any]) -> bool:
    """Call the hook a JSON event record names (as JsonTrials writes them); False for any other record."""
    hook = EVENTS.get(record.get("event", ""))
    if hook is None:
        return False
    payload = {k: v for k, v in record.items() if k != "event"}
    if hook == "on_trial_epoch":
        observer.on_trial_epoch(payload["number"], payload["epoch"], payload["epochs"], payload.get("value"))
    else:
        getattr(observer, hook)(payload)
    return True
