"""dlcli warmup: kernels compiled ahead land in the cache, and a later run compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcli.train.launcher import usable_cores
from tests.mirror import mnist_mirror
from tests.train.test_precompile import _children_left_after, _children_using

REPO = Path(__file__).resolve().parents[2]

# every kernel of dlcli/kernels/ by where it is: compiled or loaded in this process, only in the cache, or missing
# (inline="always" helpers compile inside their callers, and have no cache of their own)
UNCOMPILED = """
import importlib, json, os, pkgutil, sys
import dlcli.kernels
from numba.core.registry import CPUDispatcher
{action}
missing, compiled, in_cache, loaded = [], [], [], []
for info in pkgutil.iter_modules(dlcli.kernels.__path__):
    module = importlib.import_module("dlcli.kernels." + info.name)
    for name, value in vars(module).items():
        if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
            if value.targetoptions.get("inline", "never") == "always":
                continue
            # a callee compiles inside its caller's compile: where the other process compiled the caller, this one
            # loaded the caller's machine code and never needed the callee, which the cache holds all the same
            cached = os.path.exists(value._cache._cache_file._index_path)
            (compiled if value.signatures else in_cache if cached else missing).append(module.__name__ + "." + name)
            if sum(value.stats.cache_hits.values()):  # another process compiled it, this one loaded it
                loaded.append(module.__name__ + "." + name)
            misses = [str(sig) for sig, count in value.stats.cache_misses.items() if count]
            if misses:
                print("MISS", module.__name__ + "." + name, misses, file=sys.stderr)
print(json.dumps({{"missing": missing, "compiled": compiled, "in_cache": in_cache, "loaded": loaded}}))
"""


def run_python(code: str, cache: Path, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "DLCLI_DATASETS_MIRROR": str(mnist_mirror()),
           "DLCLI_CACHE": str(cwd / "data-cache"), "CI": "true", **extra_env}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


# warmup's helper process needs a second core and DLCLI_PRECOMPILE=process (the default)
TWO_CORES = usable_cores() >= 2


@pytest.mark.skipif(not TWO_CORES, reason="warmup compiles in one process on one core")
def test_warmup_without_a_spec_compiles_every_kernel_into_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    action = "from click.testing import CliRunner\nfrom dlcli.cli.commands import cli\n" \
             "result = CliRunner().invoke(cli, ['warmup', '--json'])\nassert result.exit_code == 0, result.output\n" \
             "print(result.output, file=sys.stderr)"
    result = run_python(UNCOMPILED.format(action=action), cache, tmp_path, DLCLI_PRECOMPILE="process")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["missing"] == [] and len(found["compiled"]) >= 30
    # the cache was empty: what this process loaded, the helper process compiled (both cores worked), and this
    # process compiled the rest itself; the CTC loss comes late here and early there
    assert "dlcli.kernels.ctc.ctc_loss_rows" in found["loaded"] and len(found["loaded"]) < len(found["compiled"])
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["warmup", "end"]
    assert events[0]["target"] == "every kernel" and events[1]["cache"] == str(cache)
    # the machine code is on disk: one index per kernel file that compiled something
    indexes = {p.name.split(".")[0] for p in cache.rglob("*.nbi")}
    assert {"conv", "winograd", "winograd_separable", "pool", "batch_normalization", "recurrent", "lstm", "gru",
            "ctc", "optim", "augment", "sparse"} <= indexes
    assert not list(cache.rglob("dlcli-claim-*"))  # no compile was left half-done


@pytest.mark.skipif(not TWO_CORES, reason="warmup compiles in one process on one core")
def test_the_warmup_helper_exits_when_warmup_is_killed(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "DLCLI_PRECOMPILE": "process"}
    warmup = subprocess.Popen([sys.executable, "-m", "dlcli", "warmup"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_children_using(cache)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        helpers = [pid for pid in _children_using(cache) if pid != warmup.pid]
        assert len(helpers) == 1, "warmup starts one helper process"
    finally:
        warmup.kill()
        warmup.wait()
    assert _children_left_after(cache, 30) == []


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
