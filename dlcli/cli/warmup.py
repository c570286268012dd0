"""dlcli warmup."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli.main import json_mode
from dlcli.output_text import json_line


@click.command("warmup")
@click.argument("spec_paths", metavar="[SPEC]...", nargs=-1, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of every SPEC (TOML value syntax), as for train. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per warm-up, nothing else.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def warmup_command(spec_paths: tuple[Path, ...], overrides: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Compile the Numba kernels into the cache (NUMBA_CACHE_DIR): those each SPEC's training run calls, or,
    without a SPEC, every kernel.

    A SPEC is trained for one step into a temporary folder (its dataset is downloaded into the data cache too).
    Run it in a Docker image layer or a CI cache step so later runs start without compiling.
    """
    json_mode(as_json)
    from dlcli.errors import SpecError
    from dlcli.kernels.cache import cache_location
    from dlcli.train.warmup import timed, warm_up_kernels, warm_up_spec

    if overrides and not spec_paths:
        raise SpecError("--set overrides a key of a SPEC; give the SPEC files to warm up, or no --set")
    for path in spec_paths:  # every spec checked before anything compiles: one mistake, one message
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file; give TOML spec files, or no SPEC to compile every kernel")
    targets = [str(p) for p in spec_paths] or ["every kernel"]
    for path, target in zip(spec_paths or (None,), targets):
        seconds = timed(warm_up_kernels) if path is None else timed(warm_up_spec, path, overrides)
        if as_json:
            click.echo(json_line({"event": "warmup", "target": target, "seconds": round(seconds, 3)}))
        elif not quiet:
            click.echo(f"warmup {target}: {seconds:.1f} s")
    if as_json:
        click.echo(json_line({"event": "end", "cache": cache_location()}))
    elif not quiet:
        click.echo(f"kernels cached in {cache_location()}")
