"""SPEC.md is the contract: its complete examples validate, and every spec in specs/ trains."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.graph import build_model
from dlcli.spec.load import load_spec, validate_spec
from dlcli.train.fit import fit_run
from tests.jena_like import write_jena_like
from tests.mirror import mnist_mirror

REPO = Path(__file__).resolve().parents[1]
SPEC_MD = REPO.parent / "shared" / "SPEC.md"


def _complete_examples() -> list[str]:
    """The ```toml blocks that are whole spec files (a name, and valid TOML; outlines with `...` are not)."""
    import tomllib

    if not SPEC_MD.is_file():
        pytest.fail(f"{SPEC_MD} is missing: CI keeps ../shared beside the checkout")
    complete = []
    for block in re.findall(r"```toml\n(.*?)```", SPEC_MD.read_text(), re.S):
        try:
            if "name" in tomllib.loads(block):
                complete.append(block)
        except tomllib.TOMLDecodeError:
            assert "..." in block, f"a SPEC.md example is broken TOML:\n{block}"
    return complete


def test_spec_md_examples_validate_and_build() -> None:
    import tomllib

    examples = _complete_examples()
    assert len(examples) >= 2
    for text in examples:
        spec = validate_spec(tomllib.loads(text), SPEC_MD)
        build_model(spec.model, np.random.default_rng(0), spec)


def test_spec_md_examples_are_the_shipped_specs() -> None:
    import tomllib

    shipped = {load_spec(p).name: load_spec(p) for p in (REPO / "specs").glob("*.toml")}
    for text in _complete_examples():
        example = validate_spec(tomllib.loads(text), REPO / "specs" / "x.toml")
        assert example.model == shipped[example.name].model and example.train == shipped[example.name].train


@pytest.fixture(scope="module")
def graph_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("graph-data")
    subprocess.run([sys.executable, str(REPO / "specs" / "make_graph_data.py"), "--out", str(folder),
                    "--tickets", "200"], check=True, capture_output=True)
    # the Jena spec's table, not shipped: one in its format, long enough for a window in each range
    write_jena_like(folder / "jena_climate_2009_2016.csv", rows=3600)
    return folder


@pytest.mark.parametrize("spec_file", sorted(p.name for p in (REPO / "specs").glob("*.toml")))
def test_every_shipped_spec_trains_a_few_steps(spec_file: str, graph_data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mnist_mirror()))
    monkeypatch.setenv("DLCLI_CACHE", str(tmp_path / "cache"))
    path = REPO / "specs" / spec_file
    overrides = ["train.epochs=1", "train.steps_per_epoch=3"]
    spec = load_spec(path)
    if spec.data.dataset == "fashion_mnist":  # no download in tests: the same model trains on MNIST's format
        overrides.append('data.dataset="mnist"')
    for key in ("train", "test", "validation"):
        value = getattr(spec.data, key)
        if value is not None:
            overrides.append(f'data.{key}="{graph_data / Path(value).name}"')
    summary = fit_run(load_spec(path, overrides), tmp_path / "run", [])
    assert summary["epochs_run"] == 1 and np.isfinite(summary["final"]["loss"])
    history = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert len(history) == 1
