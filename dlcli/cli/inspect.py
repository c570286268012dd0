"""dlcli validate, dlcli summary and dlcli list: look at specs, runs and registries without training."""

from __future__ import annotations

from pathlib import Path

import click

KINDS = ("layers", "activations", "initializers", "losses", "optimizers", "schedules", "metrics", "callbacks")


@click.command("validate")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key, as in train.")
def validate_command(spec_path: Path, overrides: tuple[str, ...]) -> None:
    """Check a spec (keys, graph, shapes, monitored values, data files) and print the model summary; trains nothing."""
    from dlcli.errors import SpecError
    from dlcli.report import render_summary_table
    from dlcli.spec.load import load_spec
    from dlcli.train.checks import check_data_files, model_for_summary
    from dlcli.train.loop import Objective, check_monitors, reported_names

    spec = load_spec(spec_path, overrides)
    model = model_for_summary(spec)
    has_validation = spec.data.validation is not None or spec.data.validation_split > 0
    try:
        check_monitors(spec.train, reported_names(Objective(model), has_validation))
    except SpecError as err:
        raise SpecError(f"{spec_path.name}: {err}") from None
    check_data_files(spec, model)
    trainable, frozen = model.parameter_counts()
    click.echo(render_summary_table(model.summary_rows(), {"total": trainable + frozen, "trainable": trainable,
                                                           "non_trainable": frozen}))
    click.echo(f"{spec_path}: valid")


@click.command("summary")
@click.argument("target", metavar="SPEC_OR_RUN", type=click.Path(path_type=Path))
def summary_command(target: Path) -> None:
    """Layers, output shapes and parameter counts of a spec, a run directory or a checkpoint."""
    from dlcli.report import render_summary_table
    from dlcli.train.checks import model_for_summary

    if target.suffix == ".toml":
        from dlcli.spec.load import load_spec

        model = model_for_summary(load_spec(target))
    else:
        from dlcli.train.rundir import load_run

        model = load_run(target)[1]
    trainable, frozen = model.parameter_counts()
    click.echo(render_summary_table(model.summary_rows(), {"total": trainable + frozen, "trainable": trainable,
                                                           "non_trainable": frozen}))


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS), required=False)
def list_command(kind: str | None) -> None:
    """List registered names with their one-line docs (all kinds, or one)."""
    from dlcli import registry
    from dlcli.components import load_all

    load_all()
    for name in (kind,) if kind else KINDS:
        click.echo(f"{name}:")
        for entry in sorted(getattr(registry, name), key=lambda e: e.name):
            click.echo(f"  {entry.name:<36} {entry.doc}")
