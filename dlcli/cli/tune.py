"""dlcli tune."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from dlcli.cli.main import json_mode

if TYPE_CHECKING:
    from dlcli.tune.search import Search, TuneOptions


@click.command("tune")
@click.argument("spec_path", metavar="SPEC", required=False, type=click.Path(path_type=Path))
@click.option("--param", "params", multiple=True, metavar="KEY=DISTRIBUTION",
              help="A key to search and how: uniform(LOW, HIGH), loguniform(LOW, HIGH), int(LOW, HIGH[, log]) or "
                   "choice(VALUE, ...). Repeatable; adds to the spec's [tune.params].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for every trial, as in dlcli train. Repeatable.")
@click.option("--metric", default=None, help="The logged value to optimize (default: [tune] metric, else "
                                             "train.monitor).")
@click.option("--direction", type=click.Choice(["auto", "max", "min"]), default=None,
              help="Whether higher or lower is better (default auto: from the metric, as callbacks guess).")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Trials in the study, counting those it holds already (default: [tune] trials, else 20).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Start no new trial after this many seconds.")
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default=None,
              help="How Optuna picks values (default tpe), seeded from the spec's seed.")
@click.option("--pruner", type=click.Choice(["median", "hyperband", "none"]), default=None,
              help="How Optuna stops unpromising trials after an epoch (default median).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials at once, each in its own process with its share of the threads.")
@click.option("--storage", default=None, metavar="URL",
              help="The study's database, shared by machines (e.g. postgresql://...); default SQLite in the study "
                   "folder.")
@click.option("--study-name", default=None, help="The study's name in its storage (default: the spec's name).")
@click.option("--study-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where trials' run directories and best.toml go (default runs/<name>-tune/).")
@click.option("--resume-trials", is_flag=True,
              help="Continue trials a kill interrupted from their last checkpoint instead of recording them failed.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Print the trials of the study in this folder again, with parameter importances; runs nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per event, nothing else on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--worker", is_flag=True, hidden=True, help="Internal: one of --jobs' worker processes.")
def tune_command(spec_path: Path | None, params: tuple[str, ...], overrides: tuple[str, ...], metric: str | None,
                 direction: str | None, trials: int | None, timeout: float | None, sampler: str | None,
                 pruner: str | None, jobs: int, storage: str | None, study_name: str | None,
                 study_dir: Path | None, resume_trials: bool, report_dir: Path | None, as_json: bool, quiet: bool,
                 worker: bool) -> None:
    """Search hyperparameters of SPEC with Optuna; every trial is a run directory under runs/<name>-tune/.

    Running the same command again continues the study (after a kill too). At the end best.toml holds the
    spec with the best values: dlcli train runs/<name>-tune/best.toml. Needs dlcli[tune].
    """
    json_mode(as_json or worker)
    from dlcli.errors import SpecError

    output = "json" if as_json or worker else "quiet" if quiet else "auto"
    if report_dir is not None:
        from dlcli.report.tuning import print_report
        from dlcli.tune.results import study_report

        if spec_path is not None:
            raise SpecError("--report prints a study that exists; give no SPEC with it")
        print_report(study_report(report_dir, storage, study_name), output)
        return
    if spec_path is None:
        raise click.UsageError("give SPEC to tune, or --report DIR to print a study")
    from dlcli.report.tuning import make_tune_reporter
    from dlcli.tune.search import TuneOptions, prepare, run_search

    options = TuneOptions(spec_path, overrides, params, metric, direction, trials, timeout, sampler, pruner, storage,
                          study_name, study_dir, resume_trials)
    search = prepare(options)
    with make_tune_reporter(output, worker=worker) as reporter:
        if jobs > 1 and not worker:
            from dlcli.tune.parallel import run_parallel

            run_parallel(search, reporter, jobs, _worker_args(options, search))
        else:
            run_search(search, reporter, announce=not worker)


def _worker_args(options: TuneOptions, search: Search) -> list[str]:
    """The command line of one --jobs worker: this search, one trial at a time, in the same study."""
    args = [str(options.spec_path)]
    for override in options.overrides:
        args += ["--set", override]
    for param in options.params:
        args += ["--param", param]
    args += ["--metric", search.record.metric, "--direction", "max" if search.maximize else "min",
             "--trials", str(search.trials), "--sampler", search.sampler, "--pruner", search.pruner,
             "--storage", search.place.storage_url, "--study-name", search.place.name,
             "--study-dir", str(search.place.directory)]
    if search.timeout is not None:
        args += ["--timeout", str(search.timeout)]
    if options.resume_trials:
        args.append("--resume-trials")
    return args
