"""`dlcli train --resume`: which spec changes a checkpoint can follow, and what a resume does with the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcli.errors import SpecError
from dlcli.train.resume import resume_run
from tests.train.test_fit import fit, spec_doc, write_blobs


@pytest.fixture
def blobs_run(tmp_path: Path) -> Path:
    """A finished 1-epoch run on the blobs (validation_split 0.25, monitor val_loss)."""
    fit(spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=1), tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("override,key", [
    ("data.validation_split=0.5", "data.validation_split: 0.25 -> 0.5"),  # validating on examples it trained on
    ("data.validation_split=0.0", "data.validation_split: 0.25 -> 0.0"),  # best would follow loss, not val_loss
    ('train.monitor_mode="max"', "train.monitor_mode: 'auto' -> 'max'"),  # best compared the other way round
])
def test_resume_refuses_keys_that_only_start_like_a_safe_one(blobs_run: Path, override: str, key: str) -> None:
    before = (blobs_run / "checkpoints" / "best.safetensors").read_bytes()
    with pytest.raises(SpecError) as info:
        resume_run(blobs_run, ("train.epochs=2", override), None, [])
    assert info.value.exit_code == 2
    assert f"cannot resume {blobs_run}: the spec changed in ways its checkpoint cannot follow: {key}" \
        == str(info.value)
    assert (blobs_run / "checkpoints" / "best.safetensors").read_bytes() == before


def test_resume_refuses_a_changed_validation_split_in_the_edited_spec_file(blobs_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "blobs.npz"
    edited = tmp_path / "blobs.toml"
    edited.write_text(f'name = "blobs"\nseed = 5\n[data]\ntrain = "{data}"\nvalidation_split = 0.1\n[model]\n'
                      'input = { shape = [2] }\n[[model.layers]]\ntype = "dense"\nunits = 16\nactivation = "relu"\n'
                      '[[model.layers]]\ntype = "dropout"\nrate = 0.2\n[[model.layers]]\ntype = "dense"\nunits = 3\n'
                      'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\n'
                      'optimizer = { type = "adam", learning_rate = 0.01 }\nmetrics = ["accuracy"]\nepochs = 2\n'
                      'batch_size = 16\n')
    with pytest.raises(SpecError, match=r"data\.validation_split: 0\.25 -> 0\.1$"):
        resume_run(edited, (), blobs_run, [])


def test_resume_still_follows_the_safe_keys(blobs_run: Path) -> None:
    notes: list[str] = []
    summary = resume_run(blobs_run, ("train.epochs=2", 'description="longer"'),
                         None, [], notes)
    assert summary is not None and summary["epochs_run"] == 2 and notes == []
