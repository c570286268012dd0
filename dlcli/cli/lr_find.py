"""dlcli lr-find."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode


@click.command("lr-find")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key, as in dlcli train. Repeatable.")
@click.option("--start", type=click.FloatRange(min=0, min_open=True), default=1e-7, show_default=True,
              help="The learning rate of the first step.")
@click.option("--end", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="The learning rate of the last step.")
@click.option("--steps", type=click.IntRange(min=10), default=100, show_default=True,
              help="Batches to train, the rate growing exponentially from --start to --end.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the curve to this image file (.png, .svg, .pdf); needs dlcli[plot].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the curve and the suggestion.")
def lr_find_command(spec_path: Path, overrides: tuple[str, ...], start: float, end: float, steps: int,
                    output: Path | None, as_json: bool) -> None:
    """Find a learning rate for SPEC: train a copy of its model while the rate grows, print the loss curve and
    the rate where the loss falls fastest. Writes nothing under runs/ (a range test, as fastai's lr_find).
    """
    json_mode(as_json)
    from dlcli.errors import DivergedError
    from dlcli.report.curve import plot_curve, text_curve
    from dlcli.report.records import json_record
    from dlcli.spec.keys import toml_value
    from dlcli.spec.load import load_spec
    from dlcli.train.lr_range import find_learning_rate

    spec = load_spec(spec_path, overrides)
    result = find_learning_rate(spec, start, end, steps)
    if output is not None:
        plot_curve(output, result.rates, result.losses, result.smoothed, result.suggested)
    if result.suggested is None:
        raise DivergedError(f"the loss blew up after {len(result.rates)} of {steps} steps (at learning rate "
                            f"{result.rates[-1]:.3g}), too soon to suggest a rate; give a lower --end or more "
                            "--steps")
    setting = f"train.optimizer.learning_rate={float(f'{result.suggested:.3g}')}"
    command = " ".join(["dlcli train", str(spec_path), *(f"--set {o}" for o in overrides), f"--set {setting}"])
    if as_json:
        click.echo(json_record("lr_find", {**result.as_dict(), "set": setting, "command": command,
                                           "output": str(output) if output else None}))
        return
    click.echo(text_curve(result.rates, result.smoothed, result.suggested))
    stopped = (f"stopped after {len(result.rates)} of {steps} steps: the smoothed loss blew up"
               if result.stopped == "blew_up" else f"{steps} steps")
    click.echo(f"{stopped}; suggested learning rate {toml_value(float(f'{result.suggested:.3g}'))} (steepest "
               "descent of the smoothed loss)")
    if output is not None:
        click.echo(f"plot written to {output}")
    click.echo(command)
