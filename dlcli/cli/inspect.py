"""dlcli validate, dlcli summary and dlcli list: look at specs, runs and registries without training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING


import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line

if TYPE_CHECKING:
    from dlcli.registry import Registry

KINDS = ("layers", "activations", "initializers", "losses", "optimizers", "schedules", "metrics", "callbacks",
         "loggers", "readers", "datasets")


@click.command("validate")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key, as in train.")
@click.option("--data-report", is_flag=True,
              help="Also report on the data: per split counts, class balance, label ranges, constant columns, "
                   "missing cells, and examples shared between training and validation or test.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with the data report) instead.")
@click.option("--strict", is_flag=True,
              help="With model.init_from: every weight must match the other run's by name, as train --strict.")
def validate_command(spec_path: Path, overrides: tuple[str, ...], data_report: bool, as_json: bool,
                     strict: bool) -> None:
    """Check a spec (keys, graph, shapes, monitored values, data files) and print the model summary; trains nothing."""
    json_mode(as_json)
    from dlcli.graph import check_ids_fit
    from dlcli.report import render_data_report, render_summary_table
    from dlcli.spec.load import load_spec, naming_the_file
    from dlcli.train.checks import check_data_files, model_for_summary, unread_dataset_note
    from dlcli.train.init_from import read_init_source
    from dlcli.train.loop import Objective
    from dlcli.train.monitored import check_monitors, declares_validation, reported_names

    spec = load_spec(spec_path, overrides)
    with naming_the_file(spec_path):
        model = model_for_summary(spec)
        check_ids_fit(model)
        check_monitors(spec.train, reported_names(Objective(model, strict=True), declares_validation(spec)))
        if spec.model.init_from is not None:  # train reads it before the data: a missing run is the same error
            read_init_source(model, spec.model.init_from, strict)
        splits = check_data_files(spec, model)  # None: a registry dataset that would need a download
    notes = [unread_dataset_note(spec.data.dataset, spec_path)] if splits is None and spec.data.dataset else []
    report = None
    if data_report:
        from dlcli.train.data_report import data_report as make_report

        report = make_report(spec, model, splits)
    trainable, frozen = model.parameter_counts()
    counts = {"total": trainable + frozen, "trainable": trainable, "non_trainable": frozen}
    if as_json:
        click.echo(json_line({"event": "validate", "spec": str(spec_path), "valid": True, "params": counts,
                              **({"data_report": report} if report is not None else {}), "notes": notes}))
        return
    click.echo(render_summary_table(model.summary_rows(), counts))
    if report is not None:
        click.echo(render_data_report(report))
    click.echo(f"{spec_path}: valid")
    for note in notes:
        click.echo(f"note: {note}", err=True)


@click.command("summary")
@click.argument("target", metavar="SPEC_OR_RUN", type=click.Path(path_type=Path))
@click.option("--graph", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the model graph to FILE: .dot (Graphviz text), or .svg/.png/.pdf (needs Graphviz's dot).")
def summary_command(target: Path, graph: Path | None) -> None:
    """Layers, output shapes and parameter counts of a spec, a run directory or a checkpoint."""
    from dlcli.report import render_summary_table
    from dlcli.train.checks import model_for_summary

    # a spec is any file but a checkpoint: DIGITS.TOML, or a spec saved without the suffix, is not a damaged
    # checkpoint (validate and train read them)
    if target.suffix.lower() == ".toml" or (target.is_file() and target.suffix.lower() != ".safetensors"):
        from dlcli.spec.load import load_spec

        spec = load_spec(target)
        model = model_for_summary(spec)
    else:
        from dlcli.train.run_checkpoints import load_run

        spec, model = load_run(target)[:2]
    if graph is not None:
        from dlcli.report.model_graph import write_model_graph

        write_model_graph(model, graph, spec.name)
    trainable, frozen = model.parameter_counts()
    click.echo(render_summary_table(model.summary_rows(), {"total": trainable + frozen, "trainable": trainable,
                                                           "non_trainable": frozen}))
    if graph is not None:
        click.echo(f"graph path={graph}")


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS), required=False)
@click.argument("name", required=False)
def list_command(kind: str | None, name: str | None) -> None:
    """List registered names with their one-line docs (all kinds, or one); with a NAME, that component's keys.

    `dlcli list layers dense` prints each key dense takes: its type, default, limits and doc.
    """
    from dlcli import registry
    from dlcli.components import load_all

    load_all()
    if kind in (None, "readers", "datasets"):
        import dlcli.data  # noqa: F401 - registers the readers and the datasets (no numba: `list layers` skips it)
    if name is not None:
        assert kind is not None  # click fills KIND before NAME
        _print_component(getattr(registry, kind), name)
        return
    for each in (kind,) if kind else KINDS:
        click.echo(f"{each}:")
        for entry in sorted(getattr(registry, each), key=lambda e: e.name):
            click.echo(f"  {entry.name:<36} {entry.doc}")


def _print_component(kind: Registry, name: str) -> None:
    """One component: its name, doc, and a table of its keys (what `type = NAME` takes besides `type`)."""
    from dlcli.spec.keys import describe_keys
    from dlcli.spec.reference import declared_options
    from dlcli.spec.schema import spec_model

    entry = kind.entry(name)  # an unknown name: exit 2 with the known names and a did-you-mean
    canonical = kind.entry(entry.alias_of) if entry.alias_of else entry
    click.echo(f"{canonical.name}: {canonical.doc}")
    if entry.alias_of:
        click.echo(f"({name} is another name for {canonical.name})")
    model = spec_model(canonical)
    rows = [r for r in describe_keys(model) if r.key not in ("type", "schedule")] if model is not None else []
    if not rows:
        options = declared_options(canonical)  # a dataset's [data.options] keys
        click.echo(f"Options in [data.options]: {', '.join(options)}" if options else "It takes no options.")
        return
    table = [("key", "type", "default", "constraints", "description"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo(("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4]).rstrip())
