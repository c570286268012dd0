"""dlcli reproduce."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("reproduce")
@click.argument("run", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the re-run goes (default RUN-reproduced, or RUN-reproduced-2, ...).")
@click.option("--json", "as_json", is_flag=True, help="JSON events for the re-run, then one reproduce object.")
@click.option("--quiet", is_flag=True, help="Print nothing but the result and errors.")
def reproduce_command(run: Path, run_dir: Path | None, as_json: bool, quiet: bool) -> None:
    """Re-run a finished run from its manifest and resolved spec; report whether its final weights come out
    bit-identical.

    The data files must have the sha256 the run recorded (exit 3 otherwise). Bit-identity is promised on the
    same machine with the same thread settings and number of MPI ranks: the re-run uses the run's number of ranks
    (launching mpiexec as --workers does), and any other difference is listed as a note. Exit 0 when the
    weights are bit-identical, 1 when they are not (after a line saying so).
    """
    json_mode(as_json)
    from dlcli.errors import ResultMismatchError, SpecError
    from dlcli.train.launcher import under_mpi_launcher
    from dlcli.train.reproduce import check_data, reproducible_spec
    from dlcli.train.runs import RunRecord

    record = RunRecord.read(run)
    spec = reproducible_spec(record)
    world_size = int(record.manifest.get("world_size") or 1)
    if world_size > 1 and not under_mpi_launcher():
        check_data(record, spec)  # once, here, before N ranks start
        _launch(run, run_dir, as_json, quiet, world_size)
        return
    from dlcli.report import make_reporter
    from dlcli.train.distributed import connect
    from dlcli.train.fit import fit_run
    from dlcli.train.reproduce import compare_weights, environment_differences
    from dlcli.train.rundir import checkpoint_path, claim_run_directory

    world = connect(600.0, 100)  # train's defaults: a watchdog, and a weight check every 100 steps
    try:
        if world.size != world_size:
            raise SpecError(f"{run} was trained on {world_size} MPI ranks and this job has {world.size}; run dlcli "
                            f"reproduce {run} without mpiexec (it starts {world_size} ranks itself)")
        check_data(record, spec)
        notes = environment_differences(record, world.size)
        output = "quiet" if world.rank != 0 or quiet else "json" if as_json else "auto"
        directory = claim_run_directory(run_dir, run.with_name(f"{run.name}-reproduced"), False, world)
        provenance = {"reproduces": {"run_dir": str(run), "run_id": record.manifest.get("run_id")}}
        with make_reporter(output) as reporter:
            fit_run(spec, directory, [reporter], world=world, provenance=provenance)
        if world.rank != 0:
            return
        comparison = compare_weights(checkpoint_path(run, "last"), checkpoint_path(directory.path, "last"))
    finally:
        world.close()
    if as_json:
        click.echo(json_line({"event": "reproduce", "original": str(run), "run_dir": str(directory.path),
                               **comparison.record(), "environment_differences": notes}))
    else:
        for note in notes:
            click.echo(f"note: differs from the original run: {note}", err=True)
        click.echo(f"reproduce original={run} run_dir={directory.path} bit_identical="
                   f"{'true' if comparison.identical else 'false'} tensors={comparison.tensors}"
                   + (f" differing={len(comparison.differing)} max_abs_difference={comparison.max_abs_difference:.4g}"
                      f" largest_in={comparison.largest_in}" if not comparison.identical else ""))
    if not comparison.identical:
        where = "; it ran with these differences: " + "; ".join(notes) if notes else \
            "; nothing in the environment differs that dlcli records (report it: a run should reproduce exactly)"
        raise ResultMismatchError(f"{directory.path}: the final weights are not bit-identical to {run}'s: "
                                  f"{len(comparison.differing)} of {comparison.tensors} tensors differ, by up to "
                                  f"{comparison.max_abs_difference:.3g} ({comparison.largest_in}){where}")


def _launch(run: Path, run_dir: Path | None, as_json: bool, quiet: bool, workers: int) -> None:
    """Re-run on the run's number of MPI ranks: this command again, under mpiexec."""
    from dlcli.cli.distributed import check_mpi4py, run_workers

    check_mpi4py()
    args = ["reproduce", str(run), *(["--run-dir", str(run_dir)] if run_dir is not None else []),
            *(["--json"] if as_json else []), *(["--quiet"] if quiet else [])]
    code = run_workers(workers, args, "run the same dlcli reproduce command again")
    click.get_current_context().exit(code)
