"""A real trained checkpoint, truncated and bit-flipped many times: every damaged copy is refused (exit 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import CheckpointError
from dlcli.train.run_checkpoints import load_run
from tests.train.test_fit import fit, spec_doc, write_blobs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    fit(spec_doc(write_blobs(folder / "blobs.npz"), epochs=1), folder / "run")
    return folder / "run" / "checkpoints" / "last.safetensors"


def test_random_truncations_and_bit_flips_never_load_silently(trained: Path, tmp_path: Path) -> None:
    good = trained.read_bytes()
    rng = np.random.default_rng(0)
    damaged = tmp_path / "damaged.safetensors"
    silent, cases = [], 0
    for cut in rng.integers(0, len(good), 150):
        damaged.write_bytes(good[:cut])
        cases += 1
        try:
            load_checkpoint(damaged)
            silent.append(f"truncated at {cut}")
        except CheckpointError as err:
            assert "damaged.safetensors" in str(err)
    for position, bit in zip(rng.integers(0, len(good), 300), rng.integers(0, 8, 300)):
        flipped = bytearray(good)
        flipped[position] ^= 1 << bit
        damaged.write_bytes(bytes(flipped))
        cases += 1
        try:
            load_checkpoint(damaged)
            silent.append(f"bit {bit} of byte {position}")
        except CheckpointError as err:
            assert "damaged.safetensors" in str(err)
    assert cases == 450 and not silent, silent


def test_a_checkpoint_of_an_unrelated_model_is_refused(trained: Path, tmp_path: Path) -> None:
    other = spec_doc(write_blobs(tmp_path / "b.npz"), epochs=1)
    other["model"]["layers"][0]["units"] = 8  # same names, other shapes
    fit(other, tmp_path / "other")
    from dlcli.graph import build_model
    from dlcli.spec.load import validate_spec
    from dlcli.train.run_checkpoints import restore_model

    spec = validate_spec(spec_doc(tmp_path / "b.npz"), Path("s.toml"))
    model = build_model(spec.model, np.random.default_rng(0), spec)
    arrays, _ = load_checkpoint(tmp_path / "other" / "checkpoints" / "last.safetensors")
    with pytest.raises(CheckpointError, match=r"has shape \[2, 8\], the model needs \[2, 16\]"):
        restore_model(model, arrays, Path("other.safetensors"))
    del arrays["param/dense/bias"]
    with pytest.raises(CheckpointError, match="missing tensor 'param/dense/bias'"):
        restore_model(model, arrays, Path("other.safetensors"))
    spec_, loaded, *_ = load_run(trained)
    assert spec_.name == "blobs" and loaded.parameter_counts()[0] > 0


def test_predict_into_a_closed_pipe_ends_quietly(trained: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5000, 2)).astype(np.float32))
    command = f"{sys.executable} -m dlcli predict {trained} {tmp_path / 'x.npy'} | head -1"
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("index=0 ")
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr, result.stderr
    assert result.returncode == 0


def test_a_saved_spec_that_no_longer_validates_names_its_key(trained: Path, tmp_path: Path) -> None:
    # a spec a later dlcli refuses (here a name with '/'): the message said only "1 validation error for RunSpec"
    from dlcli.checkpoint import save_checkpoint

    arrays, metadata = load_checkpoint(trained)
    metadata["spec"]["model"]["layers"][0]["name"] = "block/dense"
    save_checkpoint(tmp_path / "old.safetensors", arrays, metadata)
    with pytest.raises(CheckpointError, match=r"old.safetensors: its spec no longer validates \(model.layers\[0\].name: "
                                              r".*'block/dense' contains '/'.*\); it was written by dlcli "):
        load_run(tmp_path / "old.safetensors")
