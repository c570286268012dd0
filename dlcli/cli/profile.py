"""dlcli profile."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("profile")
@click.argument("target", metavar="SPEC_OR_RUN", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key (TOML value syntax), as for train. Repeatable; a SPEC only.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Timed training steps.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed steps first (kernels compile there).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: the spec's batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as one JSON object.")
def profile_command(target: Path, overrides: tuple[str, ...], steps: int, warmup: int, batch_size: int | None,
                    as_json: bool) -> None:
    """Time training steps of a spec's model (or a run's) on its data: per node the forward and backward
    milliseconds, GFLOP/s of dense and conv layers and the activations kept for backward; the data, loss,
    optimizer and metrics phases; the step total."""
    json_mode(as_json)
    import numpy as np

    from dlcli.errors import SpecError
    from dlcli.train.profile import profile_spec, table

    if target.is_dir():
        if overrides:
            raise SpecError(f"{target}: --set changes a spec file; a run directory keeps the spec it was trained "
                            "with (profile its spec file with --set instead)")
        from dlcli.train.run_checkpoints import load_run

        spec, model, *_ = load_run(target, "last")
    else:
        from dlcli.graph import build_model
        from dlcli.spec.load import load_spec

        spec = load_spec(target, overrides)
        model = build_model(spec.model, np.random.default_rng(spec.seed), spec)
    result = profile_spec(spec, model, steps, warmup, batch_size)
    if as_json:
        click.echo(json_line({"event": "profile", **result}))
    else:
        click.echo("\n".join(table(result)))
