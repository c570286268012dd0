"""SPEC.md is the contract: its complete examples validate, and every spec in specs/ trains."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dlcli.graph import build_model
from dlcli.spec.load import apply_overrides, load_spec, read_toml, validate_spec
from dlcli.train.fit import fit_run
from tests.mirror import mnist_mirror
from tests.spec_data import spec_data_path

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


def _spec_named(name: str) -> Path:
    """The shipped spec whose run is named `name` (what an init_from of runs/<name> comes from)."""
    for path in (REPO / "specs").glob("*.toml"):
        if load_spec(path).name == name:
            return path
    raise AssertionError(f"no spec in specs/ trains runs/{name}")


def _train_a_few_steps(path: Path, folder: Path) -> tuple[dict, Path]:
    """Train a shipped spec for 3 steps into folder/<its name>, its data swapped for local files; a spec that
    starts from another run's weights (init_from) gets that run trained first, the same way."""
    spec = load_spec(path)
    document = read_toml(path)
    apply_overrides(document, ["train.epochs=1", "train.steps_per_epoch=3"])
    if spec.data.dataset == "fashion_mnist":  # no download in tests: the same model trains on MNIST's format
        document["data"]["dataset"] = "mnist"
    if spec.data.dataset == "imdb":  # no download either: the same model on random reviews of its shape
        length = spec.model.input.shape[0]
        reviews = np.random.default_rng(0).integers(0, 20000, (96, length)).astype(np.int32)
        reviews[:, :length // 2] = 0  # padding in front, as the imdb reader pads
        np.savez(folder / "imdb_like.npz", x=reviews, y=np.arange(96) % 2)
        document["data"] = {"train": str(folder / "imdb_like.npz"), "validation_split": 0.2}
    for key in ("train", "test", "validation"):
        value = getattr(spec.data, key)
        if value is not None:
            document["data"][key] = str(spec_data_path(value))
    if spec.model.input is not None and spec.model.input.shape == [180, 180, 3]:
        document["train"]["batch_size"] = 2  # the book's full-size convnet: a few small steps are enough
    if spec.model.init_from is not None:
        _, source = _train_a_few_steps(_spec_named(Path(spec.model.init_from).name), folder)
        document["model"]["init_from"] = str(source)
    run = folder / spec.name
    return fit_run(validate_spec(document, path), run, [], strict=spec.name == "finetune-top"), run


@pytest.mark.parametrize("spec_file", sorted(p.name for p in (REPO / "specs").glob("*.toml")))
def test_every_shipped_spec_trains_a_few_steps(spec_file: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLCLI_DATASETS_MIRROR", str(mnist_mirror()))
    monkeypatch.setenv("DLCLI_CACHE", str(tmp_path / "cache"))
    summary, run = _train_a_few_steps(REPO / "specs" / spec_file, tmp_path)
    assert summary["epochs_run"] == 1 and np.isfinite(summary["final"]["loss"])
    history = (run / "history.jsonl").read_text().splitlines()
    assert len(history) == 1
