"""dlcli train."""

from __future__ import annotations

from pathlib import Path


import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("train")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key (TOML value syntax), e.g. --set train.epochs=3. Repeatable.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the run goes (default runs/<name>/).")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint.")
@click.option("--overwrite", is_flag=True,
              help="Replace the run in the run directory (moved aside first, deleted when the new run finishes).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per event, nothing else on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel on this many MPI ranks (re-runs itself under mpiexec; needs dlcli[mpi]).")
@click.option("--mpi-timeout", type=click.FloatRange(min=1.0), default=600.0, show_default=True,
              help="Under MPI: abort the job when a collective has not returned after this many seconds.")
@click.option("--mpi-check-every", type=click.IntRange(min=0), default=100, show_default=True,
              help="Under MPI: compare the ranks' weight hashes every N steps (0: only at the end).")
@click.option("--allow-world-size-change", is_flag=True,
              help="Under MPI: resume a run saved with a different number of ranks, re-sharding from its step.")
@click.option("--folds", type=click.IntRange(min=2), default=None, metavar="K",
              help="K-fold validation: K runs under runs/<name>/fold-<i>/ and a summary of their mean and spread "
                   "(the same as --set data.folds=K).")
@click.option("--strict", is_flag=True,
              help="With model.init_from: every weight must match the other run's by name (none missing or extra).")
def train_command(spec_path: Path, overrides: tuple[str, ...], run_dir: Path | None, resume: bool,
                  overwrite: bool, as_json: bool, quiet: bool, workers: int, mpi_timeout: float,
                  mpi_check_every: int, allow_world_size_change: bool, folds: int | None, strict: bool) -> None:
    """Train the model in SPEC; checkpoints, history and summary go to a new run directory.

    Without --run-dir a new run gets runs/<name>/, or runs/<name>-2/ and so on when that holds a run. With
    --folds K (or data.folds), runs/<name>/ holds one run a fold and their summary.
    """
    json_mode(as_json)
    from dlcli.errors import SpecError

    if resume and overwrite:
        raise SpecError("--resume continues the run in the run directory and --overwrite replaces it; give one")
    if folds is not None:
        overrides = (*overrides, f"data.folds={folds}")
    from dlcli.train.interrupts import CommandSignals
    from dlcli.train.launcher import launcher_rank
    from dlcli.train.precompile_fork import drop_early_child, fork_early

    # no signal is ever a KeyboardInterrupt here: before the run it ends the process at once with one line, in
    # the run it stops at a checkpoint, after it it is noted (train/interrupts.py)
    with CommandSignals(as_json, speaks=launcher_rank() == 0) as signals:
        # an empty kernel cache: the child that compiles ahead starts now, while this process reads its spec
        fork_early(processes=workers)
        try:
            _train(spec_path, overrides, run_dir, resume, overwrite, as_json, quiet, workers, mpi_timeout,
                   mpi_check_every, allow_world_size_change, strict)
        finally:
            drop_early_child()  # a run that never got to compiling (a spec that fails validation): kill it, reap it
        if signals.requested is not None and launcher_rank() == 0:
            import signal

            click.echo(f"note: {signal.Signals(signals.requested).name} arrived after training had ended; the run "
                       "finished and its files are complete", err=True)


def _train(spec_path: Path, overrides: tuple[str, ...], run_dir: Path | None, resume: bool, overwrite: bool,
           as_json: bool, quiet: bool, workers: int, mpi_timeout: float, mpi_check_every: int,
           allow_world_size_change: bool, strict: bool) -> None:
    from dlcli.train.distributed import connect
    from dlcli.train.launcher import under_mpi_launcher

    # under MPI every rank joins the job before anything can fail: an error every rank meets (the spec's, the
    # data's) is then said by rank 0 alone, which ends the job (dlcli.cli.main), and no rank waits in MPI_Init
    # for one that has left
    world = connect(mpi_timeout, mpi_check_every)
    try:
        output = "json" if as_json else "quiet" if quiet else "auto"
        if _train_folds(spec_path, overrides, run_dir, resume, overwrite, output, max(workers, world.size)):
            return
        if workers > 1 and not under_mpi_launcher():
            _launch_workers(spec_path, overrides, run_dir, resume, overwrite, as_json, quiet, workers,
                            mpi_timeout, mpi_check_every, allow_world_size_change, strict)
            return
        from dlcli.report import make_reporter
        from dlcli.spec.load import load_spec, naming_the_file
        from dlcli.train.fit import fit_run
        from dlcli.train.resume import resume_run
        from dlcli.train.rundir import claim_run_directory

        # only rank 0 reports; the others would print the same lines again
        output = "quiet" if world.rank != 0 else "json" if as_json else "quiet" if quiet else "auto"
        if resume:
            notes: list[str] = []
            with make_reporter(output) as reporter:
                resume_run(spec_path, overrides, run_dir, [reporter], notes, world, allow_world_size_change)
            for note in notes:
                click.echo(f"note: {note}", err=True)
            return
        spec = load_spec(spec_path, overrides)
        directory = claim_run_directory(run_dir, Path("runs") / spec.name, overwrite, world)
        # closing the reporter stops a live display even when training fails
        with make_reporter(output) as reporter, naming_the_file(spec_path):
            fit_run(spec, directory, [reporter], world=world, spec_file=spec_path.resolve(), strict=strict)
    finally:
        world.close()


def _launch_workers(spec_path: Path, overrides: tuple[str, ...], run_dir: Path | None, resume: bool,
                    overwrite: bool, as_json: bool, quiet: bool, workers: int, mpi_timeout: float,
                    mpi_check_every: int, allow_world_size_change: bool, strict: bool) -> None:
    """`--workers N`: check what can be checked here (one clear error instead of N), then run N ranks."""
    from dlcli.cli.distributed import check_mpi4py, run_workers
    from dlcli.errors import SpecError

    check_mpi4py()
    if not (resume and spec_path.is_dir()):
        from dlcli.spec.load import load_spec

        spec = load_spec(spec_path, overrides)
        if spec.train.batch_size % workers:
            raise SpecError(f"train.batch_size: {spec.train.batch_size} does not split evenly over {workers} ranks; "
                            f"use a multiple of {workers} (the batch size is the global batch, shared by the ranks)")
    args = ["train", str(spec_path)]
    for override in overrides:
        args += ["--set", override]
    if run_dir is not None:
        args += ["--run-dir", str(run_dir)]
    args += [flag for flag, on in (("--resume", resume), ("--overwrite", overwrite), ("--json", as_json),
                                   ("--quiet", quiet), ("--strict", strict),
                                   ("--allow-world-size-change", allow_world_size_change)) if on]
    args += ["--mpi-timeout", str(mpi_timeout), "--mpi-check-every", str(mpi_check_every)]
    context = click.get_current_context().find_root()
    if (context.obj or {}).get("debug"):
        args.insert(0, "--debug")
    # a spec given: --resume continues its newest run, the one this job began
    again = f"dlcli train {run_dir or spec_path} --resume --workers {workers}"
    code = run_workers(workers, args, f"continue from the run's last checkpoint with: {again}")
    if code in (130, 143):  # like a single process: the caller sees the signal that stopped the job
        from dlcli.train.interrupts import die_by_signal

        die_by_signal(code - 128)
    click.get_current_context().exit(code)


def _train_folds(spec_path: Path, overrides: tuple[str, ...], run_dir: Path | None, resume: bool, overwrite: bool,
                 output: str, workers: int) -> bool:
    """K-fold training, when SPEC asks for folds or names a K-fold folder (dlcli/train/kfold.py); False when it
    is an ordinary run, for the caller to train."""
    from dlcli.errors import SpecError
    from dlcli.report import make_reporter, render_fold_table
    from dlcli.spec.load import load_spec
    from dlcli.train import kfold

    if resume and spec_path.is_dir():
        if not kfold.is_kfold_folder(spec_path):
            return False
        folder, spec = run_dir or spec_path, kfold.saved_spec(spec_path, overrides)
    elif spec_path.is_dir():
        return False
    else:
        spec = load_spec(spec_path, overrides)
        if spec.data.folds is None or spec.data.fold is not None:
            return False
        folder = None
    kfold.check_folds_spec(spec, workers)
    from dlcli.train.resume import newest_run
    from dlcli.train.rundir import RunDirectory, claim_run_directory
    from dlcli.train.distributed import World

    notes: list[str] = []
    if resume:
        folder = folder or run_dir or newest_run(Path("runs") / spec.name, notes)
        if not kfold.is_kfold_folder(folder):
            raise SpecError(f"cannot resume {folder} as a K-fold folder: it has no {kfold.MANIFEST}; resume a "
                            f"single run with dlcli train {folder} --resume")
        directory = RunDirectory.existing(folder)
    else:
        directory = claim_run_directory(run_dir, Path("runs") / spec.name, overwrite, World())
    summary = kfold.fit_folds(spec, directory, lambda fold: make_reporter(output), notes, resume,
                              overrides if resume else ())
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if output == "json":
        click.echo(json_line({"event": "folds", **summary}))
    elif output != "quiet":
        click.echo(render_fold_table(summary))
    return True
