"""What `dlcli tune` prints: a live table of trials on a terminal, one plain line per event otherwise, JSON
events with --json; and `dlcli tune --report`, the table again with each parameter's importance.

Plain lines:
    study study=digits-mlp trials=8 metric=val_accuracy direction=max sampler=tpe pruner=median ...
    trial=0 start train.optimizer.learning_rate=0.003
    trial=0 state=complete value=0.9611 epochs=3 seconds=2.14 train.optimizer.learning_rate=0.003
    end complete=6 pruned=2 fail=0 best.number=5 best.value=0.9722 ... best_toml=runs/digits-mlp-tune/best.toml
JSON events: study_start, trial_start, trial_epoch, trial_end, study_end (and error), one object a line.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from dlcli.report.records import format_pairs, format_value, json_record
from dlcli.report.stream import guarded
from dlcli.tune.events import TuneObserver

_STYLES = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}


def make_tune_reporter(output: str, stream: TextIO | None = None, worker: bool = False) -> TuneObserver:
    """The observer for an output choice ("auto", "plain", "json", "quiet"), as make_reporter picks for train."""
    from dlcli.report import wants_live_display

    stream = stream if stream is not None else sys.stdout
    if output == "auto":
        output = "rich" if wants_live_display(stream) and not worker else "plain"
    if output == "rich":
        return LiveTrials(stream)
    if output == "plain":
        return PlainTrials(stream)
    if output == "json":
        return JsonTrials(stream)
    return TuneObserver()


def _value(value: Any) -> str:
    return "-" if value is None else format_value(value)


class PlainTrials(TuneObserver):
    """One key=value line per event, for pipes, CI logs and grep."""

    def __init__(self, stream: TextIO) -> None:
        self.out = guarded(stream, "the search goes on, output stops")

    def on_study_begin(self, info: dict[str, Any]) -> None:
        """The study line, a note line each, and a line per trial the study already holds."""
        shown = {k: v for k, v in info.items() if k not in ("rows", "params", "notes")}
        self._write("study " + format_pairs([*shown.items(), *(("param." + k, v) for k, v in info["params"].items())]))
        for note in info.get("notes", []):
            self._write(f"note {format_value(note)}")
        for row in info.get("rows", []):
            self.on_trial_end(row)

    def on_trial_begin(self, row: dict[str, Any]) -> None:
        """trial=N start KEY=VALUE ..."""
        resumed = " resumed=true" if row.get("resumed") else ""
        self._write(f"trial={row['number']} start{resumed} {format_pairs(row['params'].items())}")

    def on_trial_end(self, row: dict[str, Any]) -> None:
        """trial=N state=... value=... epochs=... seconds=... KEY=VALUE ... reason=..."""
        pairs = [("state", row["state"]), ("value", row.get("value")), ("epochs", row.get("epochs_run")),
                 ("seconds", row.get("seconds")), *row["params"].items(), ("reason", row.get("reason"))]
        self._write(f"trial={row['number']} {format_pairs(pairs)}")

    def on_study_end(self, summary: dict[str, Any]) -> None:
        """end complete=... pruned=... fail=... best.number=... best.value=... best.params... best_toml=..."""
        self._write("end " + format_pairs(summary.items()))

    def close(self) -> None:
        """Flush the stream."""
        self.out.flush()

    def _write(self, line: str) -> None:
        self.out.write(line.rstrip() + "\n")
        self.out.flush()


class JsonTrials(TuneObserver):
    """One JSON object per event: study_start, trial_start, trial_epoch, trial_end, study_end."""

    def __init__(self, stream: TextIO) -> None:
        self.out = guarded(stream, "the search goes on, output stops")

    def on_study_begin(self, info: dict[str, Any]) -> None:
        """{"event": "study_start", ...}."""
        self._write(json_record("study_start", info))

    def on_trial_begin(self, row: dict[str, Any]) -> None:
        """{"event": "trial_start", "number": N, "params": {...}, ...}."""
        self._write(json_record("trial_start", row))

    def on_trial_epoch(self, number: int, epoch: int, epochs: int, value: float | None) -> None:
        """{"event": "trial_epoch", "number": N, "epoch": E, "epochs": EPOCHS, "value": V}."""
        self._write(json_record("trial_epoch", {"number": number, "epoch": epoch, "epochs": epochs, "value": value}))

    def on_trial_end(self, row: dict[str, Any]) -> None:
        """{"event": "trial_end", ...the row}."""
        self._write(json_record("trial_end", row))

    def on_study_end(self, summary: dict[str, Any]) -> None:
        """{"event": "study_end", ...the summary}."""
        self._write(json_record("study_end", summary))

    def close(self) -> None:
        """Flush the stream."""
        self.out.flush()

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class LiveTrials(TuneObserver):
    """A live table of the study's trials on a terminal; the best trial's values printed under it at the end."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self.console = Console(file=guarded(stream, "the search goes on, output stops"), highlight=False)
        self.rows: dict[int, dict[str, Any]] = {}
        self.params: list[str] = []
        self.metric = "value"
        self.live: Any = None

    def on_study_begin(self, info: dict[str, Any]) -> None:
        """Say what is searched and start the table with the trials the study holds."""
        from rich.live import Live

        from rich.text import Text

        self.params, self.metric = list(info["params"]), info["metric"]
        self.console.print(Text.assemble(("tuning ", "bold"), (info["study"], "bold cyan"),
                                         (f" {info['trials']} trials, {info['direction']} {info['metric']}, "
                                          f"{info['sampler']} sampler, {info['pruner']} pruner, {info['study_dir']}",
                                          "dim")))
        for note in info.get("notes", []):
            self.console.print(Text(f"note: {note}", "dim"))
        self.rows = {row["number"]: row for row in info.get("rows", [])}
        self.live = Live(self._table(), console=self.console, auto_refresh=False)
        self.live.start()

    def on_trial_begin(self, row: dict[str, Any]) -> None:
        """The trial appears as running."""
        self.rows[row["number"]] = {**row, "state": "running", "value": None, "epoch": None}
        self._refresh()

    def on_trial_epoch(self, number: int, epoch: int, epochs: int, value: float | None) -> None:
        """The running trial's epoch and latest value."""
        if number in self.rows:
            self.rows[number].update(epoch=f"{epoch}/{epochs}", value=value)
            self._refresh()

    def on_trial_end(self, row: dict[str, Any]) -> None:
        """The trial's final state and value."""
        self.rows[row["number"]] = row
        self._refresh()

    def on_study_end(self, summary: dict[str, Any]) -> None:
        """Stop the live table (it stays on screen) and print the best trial."""
        self.close()
        self.console.print(_summary_line(summary))

    def close(self) -> None:
        """Stop the live display; idempotent."""
        live, self.live = self.live, None
        if live is not None:
            live.update(self._table(), refresh=True)
            live.stop()

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table(), refresh=True)

    def _table(self) -> Any:
        return trial_table(sorted(self.rows.values(), key=lambda r: r["number"]), self.params, self.metric)


def trial_table(rows: list[dict[str, Any]], params: list[str], metric: str) -> Any:
    """The trials as a rich Table: number, each parameter, the metric, state, epochs, seconds."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("trial", *params, metric, "state", "epochs", "seconds"):
        table.add_column(Text(title), justify="left" if title == "state" else "right", overflow="fold")
    for row in rows:
        epochs = row.get("epoch") or row.get("epochs_run")
        cells = [str(row["number"]), *(_value(row["params"].get(key)) for key in params), _value(row.get("value"))]
        table.add_row(*map(Text, cells), Text(row["state"], _STYLES.get(row["state"], "")), Text(_value(epochs)),
                      Text(_value(row.get("seconds"))))
    return table


def _summary_line(summary: dict[str, Any]) -> Any:
    from rich.text import Text

    counts = f"{summary['complete']} complete, {summary['pruned']} pruned, {summary['fail']} failed"
    best = summary.get("best")
    if best is None:
        return Text.assemble(("no trial completed", "bold red"), f" ({counts})")
    return Text.assemble(_best_text(best), "\n", (f"{counts} in {format_value(summary['seconds'])} s; train it with: "
                                                  f"dlcli train {summary['best_toml']}", "dim"))


def _best_text(best: dict[str, Any]) -> Any:
    from rich.text import Text

    values = " ".join(f"{key}={format_value(value)}" for key, value in best["params"].items())
    return Text.assemble((f"best: trial {best['number']}", "bold green"), f" value={format_value(best['value'])} "
                                                                            f"{values}")


def print_report(report: dict[str, Any], output: str, stream: TextIO | None = None) -> None:
    """`dlcli tune --report`: the trials, the best, the importances (rich on a terminal, plain lines, or JSON)."""
    from dlcli.report import wants_live_display

    stream = stream if stream is not None else sys.stdout
    if output == "json":
        stream.write(json_record("report", report) + "\n")
        return
    if output == "auto" and wants_live_display(stream):
        from rich.console import Console
        from rich.text import Text

        console = Console(file=stream, highlight=False)
        console.print(Text.assemble(("study ", "bold"), (report["study"], "bold cyan"),
                                    (f" {report['direction']} {report['metric']}, {report['study_dir']}", "dim")))
        console.print(trial_table(report["rows"], list(report["params"]), report["metric"]))
        if report["best"] is not None:
            console.print(_best_text(report["best"]))
        width = max((len(key) for key in report["importances"] or {}), default=0)
        for key, share in (report["importances"] or {}).items():
            console.print(Text.assemble(f"importance {key:<{width}} {share:.3f} ", ("#" * round(share * 40), "cyan")))
        if report["importances_note"]:
            console.print(Text(f"note: {report['importances_note']}", "dim"))
        return
    plain = PlainTrials(stream)
    plain._write("study " + format_pairs([(k, report[k]) for k in ("study", "metric", "direction", "study_dir")]))
    for row in report["rows"]:
        plain.on_trial_end(row)
    plain._write("best " + format_pairs((report["best"] or {}).items()))
    for key, share in (report["importances"] or {}).items():
        plain._write(f"importance param={format_value(key)} value={format_value(share)}")
    if report["importances_note"]:
        plain._write(f"note {format_value(report['importances_note'])}")
