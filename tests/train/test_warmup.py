"""dlcli warmup: kernels compiled ahead land in the cache, and a later run compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.mirror import mnist_mirror

REPO = Path(__file__).resolve().parents[2]

# every kernel of dlcli/kernels/ that has no compiled signature; inline="always" helpers compile inside callers
UNCOMPILED = """
import importlib, json, pkgutil, sys
import dlcli.kernels
from numba.core.registry import CPUDispatcher
{action}
missing, compiled = [], []
for info in pkgutil.iter_modules(dlcli.kernels.__path__):
    module = importlib.import_module("dlcli.kernels." + info.name)
    for name, value in vars(module).items():
        if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
            if value.targetoptions.get("inline", "never") == "always":
                continue
            (compiled if value.signatures else missing).append(module.__name__ + "." + name)
            misses = [str(sig) for sig, count in value.stats.cache_misses.items() if count]
            if misses:
                print("MISS", module.__name__ + "." + name, misses, file=sys.stderr)
print(json.dumps({{"missing": missing, "compiled": compiled}}))
"""


def run_python(code: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "DLCLI_DATASETS_MIRROR": str(mnist_mirror()),
           "DLCLI_CACHE": str(cwd / "data-cache"), "CI": "true"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_warmup_without_a_spec_compiles_every_kernel_into_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    action = "from click.testing import CliRunner\nfrom dlcli.cli.commands import cli\n" \
             "result = CliRunner().invoke(cli, ['warmup', '--json'])\nassert result.exit_code == 0, result.output\n" \
             "print(result.output, file=sys.stderr)"
    result = run_python(UNCOMPILED.format(action=action), cache, tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["missing"] == [] and len(found["compiled"]) >= 30
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["warmup", "end"]
    assert events[0]["target"] == "every kernel" and events[1]["cache"] == str(cache)
    # the machine code is on disk: one index per kernel file that compiled something
    indexes = {p.name.split(".")[0] for p in cache.rglob("*.nbi")}
    assert {"conv", "winograd", "winograd_separable", "pool", "batch_normalization", "recurrent", "lstm", "gru",
            "ctc", "optim", "augment", "sparse"} <= indexes


def test_a_run_after_warming_up_its_spec_compiles_nothing(tmp_path: Path) -> None:
    cache, spec = tmp_path / "numba-cache", str(REPO / "specs" / "digits_mlp.toml")
    warm = run_python("from dlcli.train.warmup import warm_up_spec\n"
                      f"warm_up_spec(__import__('pathlib').Path({spec!r}))", cache, tmp_path)
    assert warm.returncode == 0, warm.stderr
    action = ("from dlcli.spec.load import load_spec\nfrom dlcli.train.fit import fit_run\n"
              f"fit_run(load_spec(__import__('pathlib').Path({spec!r}), ['train.epochs=1', 'train.steps_per_epoch=2']), "
              f"__import__('pathlib').Path({str(tmp_path / 'run')!r}), [])")
    result = run_python(UNCOMPILED.format(action=action), cache, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MISS" not in result.stderr  # every kernel the run called came from the cache
    assert "dlcli.kernels.optim.adam_update" in json.loads(result.stdout)["compiled"]


def test_warmup_refuses_a_missing_spec_and_a_set_without_spec_before_compiling(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dlcli.cli.commands import cli

    runner = CliRunner()
    missing = runner.invoke(cli, ["warmup", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2
    assert "nope.toml: no such spec file; give TOML spec files, or no SPEC" in missing.output
    orphan = runner.invoke(cli, ["warmup", "--json", "--set", "train.epochs=2"])
    assert orphan.exit_code == 2
    error = json.loads(orphan.output.splitlines()[0])
    assert error["event"] == "error" and "--set overrides a key of a SPEC" in error["message"]
