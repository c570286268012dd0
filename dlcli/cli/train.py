"""dlcli train."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode


@click.command("train")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key (TOML value syntax), e.g. --set train.epochs=3. Repeatable.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the run goes (default runs/<name>/).")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per event, nothing else on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def train_command(spec_path: Path, overrides: tuple[str, ...], run_dir: Path | None, resume: bool, as_json: bool,
                  quiet: bool) -> None:
    """Train the model in SPEC; checkpoints, history and summary go to the run directory."""
    json_mode(as_json)
    from dlcli.report import make_reporter
    from dlcli.spec.load import load_spec
    from dlcli.train.fit import fit_run
    from dlcli.train.resume import resume_run

    output = "json" if as_json else "quiet" if quiet else "auto"
    if resume:
        notes: list[str] = []
        with make_reporter(output) as reporter:
            resume_run(spec_path, overrides, run_dir, [reporter], notes)
        for note in notes:
            click.echo(f"note: {note}", err=True)
        return
    spec = load_spec(spec_path, overrides)
    with make_reporter(output) as reporter:  # closing stops a live display even when training fails
        fit_run(spec, run_dir or Path("runs") / spec.name, [reporter])
