"""model_checkpoint: numbered checkpoints every N epochs, written after the epoch's best, last and history, the
oldest removed beyond keep_last."""

from __future__ import annotations

import json
from pathlib import Path

from dlcli.checkpoint import load_checkpoint
from dlcli.spec.load import validate_spec
from dlcli.train.callbacks import Callback, Run
from dlcli.train.fit import fit_run
from tests.train.test_fit import spec_doc, write_blobs


class CheckpointLog(Callback):
    """Each checkpoint written, with the epochs history.jsonl held at that moment."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int]] = []

    def on_checkpoint(self, run: Run, path: str, kind: str) -> None:
        history = (Path(run.info["run_dir"]) / "history.jsonl")
        self.written.append((kind, len(history.read_text().splitlines()) if history.exists() else 0))


def test_numbered_checkpoints_every_n_epochs_keep_the_newest_after_the_runs_own(tmp_path: Path) -> None:
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=6, monitor="loss", callbacks=[
        {"type": "model_checkpoint", "every_epochs": 2, "keep_last": 2},
        {"type": "early_stopping", "monitor": "loss", "patience": 10}])
    log = CheckpointLog()
    fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "run", [log])
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.glob("epoch_*")) == ["epoch_0004.safetensors", "epoch_0006.safetensors"]
    # per epoch: best (the loss fell), last, then history, then the numbered one (periodic), never before them
    periodic = [i for i, (kind, _) in enumerate(log.written) if kind == "periodic"]
    assert [log.written[i][1] for i in periodic] == [2, 4, 6]
    assert all(log.written[i - 1][0] == "last" for i in periodic)
    # it holds what `last` held at that epoch, the callbacks' counts included
    _, metadata = load_checkpoint(folder / "epoch_0006.safetensors")
    _, last = load_checkpoint(folder / "last.safetensors")
    assert metadata["epoch"] == 6 and metadata["kind"] == "epoch_0006"
    assert metadata["callbacks"] == last["callbacks"] and metadata["callbacks"][0]["type"] == "early_stopping"


def test_a_periodic_checkpoint_evaluates_like_any_other(tmp_path: Path) -> None:
    doc = spec_doc(write_blobs(tmp_path / "blobs.npz"), epochs=2,
                   callbacks=[{"type": "model_checkpoint", "every_epochs": 1}])
    fit_run(validate_spec(doc, tmp_path / "s.toml"), tmp_path / "run", [])
    arrays, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0002.safetensors")
    last_arrays, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert json.dumps(sorted(arrays)) == json.dumps(sorted(last_arrays))
    assert all((arrays[k] == last_arrays[k]).all() for k in arrays)
