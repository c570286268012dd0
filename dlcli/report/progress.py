"""Progress on a terminal: an epoch bar and a step bar with ETA and live metrics, a summary line per epoch."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from dlcli.report.base import Reporter
from dlcli.report.records import epoch_label, format_pairs, ordered_items
from dlcli.report.stream import guarded
from dlcli.train.callbacks import Run


class RichProgress(Reporter):
    """Live rich bars while training; finished epochs are printed as lines above them and stay on screen."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console()
        self.console.file = guarded(self.console.file)  # a terminal that goes away stops the bars, not training
        self.epochs: int | None = None
        self._progress: Progress | None = None
        self._epoch_task: TaskID | None = None
        self._step_task: TaskID | None = None

    def on_train_begin(self, run: Run, info: dict[str, Any]) -> None:
        """Print what is about to be trained and show the bars."""
        self.epochs = info.get("epochs")
        name = info.get("run") or info.get("name") or "model"
        details = format_pairs(ordered_items({k: v for k, v in info.items() if k not in ("run", "name")},
                                             ("epochs", "steps_per_epoch", "samples", "params")))
        self.console.print(Text.assemble(("training ", "bold"), (str(name), "bold cyan"), " ", (details, "dim")))
        if info.get("resumed_from"):
            self.console.print(Text(f"resumed from {info['resumed_from']}", "dim"))
        self._start()

    def on_epoch_begin(self, run: Run, epoch: int, steps: int) -> None:
        """Move the epoch bar to this epoch and restart the step bar (and its ETA) from zero."""
        progress = self._start()
        assert self._epoch_task is not None and self._step_task is not None
        # completed = epoch - 1, not += 1: a resumed run starts part-way through
        progress.update(self._epoch_task, completed=epoch - 1, total=self.epochs or epoch,
                        description=f"epoch {epoch_label(epoch, self.epochs)}")
        progress.reset(self._step_task, total=steps, logs="", visible=True)

    def on_batch_end(self, run: Run, epoch: int, step: int, logs: dict[str, float]) -> None:
        """Advance the step bar and show the running loss and metrics."""
        if self._progress is not None and self._step_task is not None:
            self._progress.update(self._step_task, completed=step, logs=format_pairs(ordered_items(logs)))

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None:
        """Print the epoch's summary line above the bars."""
        if self._progress is not None and self._epoch_task is not None:
            self._progress.update(self._epoch_task, completed=epoch)
        self._print(Text.assemble((f"epoch {epoch_label(epoch, self.epochs)}", "bold"), " ",
                                  format_pairs(ordered_items(logs))))

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        """Mention best and periodic checkpoints; "last" is rewritten every epoch, so it is not news."""
        if kind != "last":
            self._print(Text(f"  saved {kind} checkpoint {path}", "dim"))

    def on_train_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Remove the bars and print one line of final values."""
        self.close()
        ran = summary.get("epochs_run")
        headline = "stopped early" if summary.get("stopped_early") else "done"
        if ran is not None:
            headline += f" after {ran} epoch{'s' if ran != 1 else ''}"
        # the final metrics, whether the loop nests them under "final" or puts them at the top level;
        # lists and other nested values (per-epoch times, best-epoch details) are for summary.json
        final = summary["final"] if isinstance(summary.get("final"), dict) else summary
        values = {k: v for k, v in final.items() if not isinstance(v, (dict, list, tuple))
                  and k not in ("run", "run_dir", "epochs_run", "stopped_early", "samples", "params", "seconds")}
        tail = {k: summary[k] for k in ("seconds", "run_dir") if k in summary}
        self.console.print(Text.assemble((headline, "bold green"), " ",
                                         format_pairs([*ordered_items(values), *tail.items()])))

    def close(self) -> None:
        """Stop the live display, restoring the cursor; idempotent, so a `finally` may always call it."""
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()

    def _start(self) -> Progress:
        """The live display, started on first use (on_train_begin may not come first when resuming)."""
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[logs]}"),
                console=self.console,
                transient=True,  # the bars vanish when done; the epoch lines above them are the record
            )
            self._epoch_task = self._progress.add_task("epoch", total=self.epochs or 1, logs="")
            # hidden until an epoch says how many steps it has, instead of pulsing with no total
            self._step_task = self._progress.add_task("step", total=None, logs="", visible=False)
            self._progress.start()
        return self._progress

    def _print(self, text: Text) -> None:
        # the progress console prints above the live bars instead of through them
        (self._progress.console if self._progress is not None else self.console).print(text)
