"""Training on an image folder streamed from disk: bit-identical to the same images in memory, whatever the number
of decode threads and the cache; exact after a kill and a resume mid-epoch; each MPI rank decodes its own shard."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dlcli.checkpoint import load_checkpoint
from dlcli.errors import DataError, RunInterruptedError
from tests.train import faults
from tests.train.test_fit import fit
from tests.train.test_interrupts import SignalAt, digest


def write_folder(root: Path, per_class: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 8x8 RGB images (bright or dark, with noise) as PNG and JPEG files; returns the images as
    Pillow decodes them, in Keras' order, and their labels."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(rng.normal(80 + 100 * label, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
            path = root / name / f"{index:02d}.{'png' if index % 2 else 'jpg'}"
            Image.fromarray(pixels).save(path)
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.array(labels)


def spec(train: Path, epochs: int = 2, **data: Any) -> dict[str, Any]:
    """A small convnet with augmentation (random per-image flips from the run's stream) on `train`."""
    return {"name": "folder", "seed": 3,
            "data": {"train": str(train), "validation_split": 0.25, **data},
            "model": {"input": {"shape": [8, 8, 3]},
                      "layers": [{"type": "random_flip", "mode": "horizontal"},
                                 {"type": "rescaling", "scale": 1 / 255},
                                 {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                                 {"type": "flatten"}, {"type": "dropout", "rate": 0.2},
                                 {"type": "dense", "units": 2, "activation": "softmax"}]},
            "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                      "metrics": ["accuracy"], "epochs": epochs, "batch_size": 4}}


def folder_spec(train: Path, **data: Any) -> dict[str, Any]:
    return spec(train, **{"image_size": [8, 8], **data})


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    images, labels = write_folder(tmp_path / "photos")
    return tmp_path / "photos", images, labels


def test_streamed_folder_equals_the_same_images_in_memory_whatever_threads_and_cache(
        tmp_path: Path, photos: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, images, labels = photos
    np.savez(tmp_path / "photos.npz", x=images, y=labels)
    fit(spec(tmp_path / "photos.npz"), tmp_path / "memory")
    expected = digest(tmp_path / "memory" / "checkpoints" / "last.safetensors")
    for name, keys in {"one": {"decode_threads": 1}, "four": {"decode_threads": 4},
                       "ram": {"decode_threads": 4, "cache": "memory"},
                       "disk": {"decode_threads": 2, "cache": "disk"},
                       "disk_again": {"decode_threads": 3, "cache": "disk"}}.items():
        fit(folder_spec(folder, **keys), tmp_path / name)
        assert digest(tmp_path / name / "checkpoints" / "last.safetensors") == expected, name


def test_an_interrupted_epoch_resumes_to_the_same_weights(tmp_path: Path,
                                                          photos: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, _, _ = photos
    doc = folder_spec(folder, decode_threads=4, cache="memory")
    doc["train"]["epochs"] = 3
    fit(doc, tmp_path / "straight")
    with pytest.raises(RunInterruptedError):
        fit(doc, tmp_path / "cut", [SignalAt(9)])  # step 2 of epoch 2 (7 steps an epoch), decoding ahead
    _, metadata = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert metadata["in_epoch"]["progress"]["done"] == 2
    (folder / "dark" / "03.png").rename(folder / "dark" / "03.png.away")  # the folder changed meanwhile
    with pytest.raises(DataError, match=r"cannot resume .*cut: its data folders do not hold the files they held"):
        fit(doc, tmp_path / "cut", resume=tmp_path / "cut" / "checkpoints" / "last.safetensors")
    (folder / "dark" / "03.png.away").rename(folder / "dark" / "03.png")
    fit(doc, tmp_path / "cut", resume=tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert digest(tmp_path / "cut" / "checkpoints" / "last.safetensors") == \
        digest(tmp_path / "straight" / "checkpoints" / "last.safetensors")


def _toml(value: Any) -> str:
    """A TOML value: inline tables for dicts, JSON's spelling for strings, numbers, booleans and lists."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def _write_spec(path: Path, doc: dict[str, Any]) -> Path:
    """`doc` as a TOML file."""
    lines = [f'name = "{doc["name"]}"', f"seed = {doc['seed']}"]
    for table in ("data", "train"):
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml(value)}" for key, value in doc[table].items()]
    lines += ["[model]", f"input = {_toml(doc['model']['input'])}"]
    for layer in doc["model"]["layers"]:
        lines.append("[[model.layers]]")
        lines += [f"{key} = {_toml(value)}" for key, value in layer.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(spec_or_run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlcli", "train", str(spec_or_run), "--quiet", *extra]


def test_a_killed_run_resumes_mid_epoch_to_the_same_weights(tmp_path: Path,
                                                            photos: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, _, _ = photos
    doc = folder_spec(folder, decode_threads=4)
    doc["train"].update(epochs=3, checkpoint_every_steps=2)
    path = _write_spec(tmp_path / "folder.toml", doc)
    env = faults.env(CI="true")
    subprocess.run(_cli(path, "--run-dir", str(tmp_path / "straight")), env=env, check=True, timeout=300)
    proc = subprocess.Popen(_cli(path, "--run-dir", str(tmp_path / "cut")), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=faults.env(CI="true", DLCLI_TEST_PAUSE_STEP="0.05"))
    last = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not last.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.4)  # several steps on: mid-epoch 1 or 2, decoding ahead
    proc.kill()
    proc.wait(timeout=30)
    assert load_checkpoint(last)[1]["step"] < 21  # killed before the end
    resumed = subprocess.run(_cli(tmp_path / "cut", "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert digest(last) == digest(tmp_path / "straight" / "checkpoints" / "last.safetensors")


def test_two_ranks_each_decode_their_own_shard_and_train_as_on_arrays(
        tmp_path: Path, photos: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, images, labels = photos
    np.savez(tmp_path / "photos.npz", x=images, y=labels)
    on_arrays = spec(tmp_path / "photos.npz", epochs=1)
    on_folder = folder_spec(folder, cache="memory", decode_threads=2)
    for doc in (on_arrays, on_folder):
        doc["data"]["validation_split"] = 0.0  # validation would have every rank decode every validation image
        doc["train"]["epochs"] = 1
    env = faults.env(CI="true", DLCLI_TEST_RECORD_DECODED=str(tmp_path))
    for name, doc in (("arrays", on_arrays), ("folder", on_folder)):
        done = subprocess.run(_cli(_write_spec(tmp_path / f"{name}.toml", doc), "--run-dir", str(tmp_path / name),
                                   "--workers", "2"), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "folder" / "checkpoints" / "last.safetensors") == \
        digest(tmp_path / "arrays" / "checkpoints" / "last.safetensors")
    ranks = [set(json.loads((tmp_path / f"rank-{rank}.json").read_text())) for rank in (0, 1)]
    assert ranks[0] & ranks[1] == set() and ranks[0] | ranks[1] == set(range(36))
    order = _first_epoch_order(tmp_path / "folder.toml")
    assert ranks[0] == {int(row) for index in np.array_split(order, 9) for row in index[:2]}  # 4 a batch, 2 each


def _first_epoch_order(spec_path: Path) -> np.ndarray:
    """The run's first shuffled order, drawn from its seed as fit draws it."""
    from dlcli.data import shuffled_order
    from dlcli.spec.load import load_spec
    from dlcli.train.streams import Streams

    return shuffled_order(36, Streams(load_spec(spec_path).seed).shuffle)


def test_predict_prints_each_path_with_its_class_name(tmp_path: Path,
                                                      photos: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, _, _ = photos
    doc = copy.deepcopy(folder_spec(folder))
    doc["train"]["epochs"] = 4
    fit(doc, tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "dlcli", "predict", str(tmp_path / "run"), str(folder / "light"),
                           "--json"], env=faults.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(p) for p in sorted((folder / "light").iterdir())]
    assert {row["label"] for row in rows} <= {"dark", "light"} and sum(row["label"] == "light" for row in rows) > 12
    assert all(abs(row["probability_0"] + row["probability_1"] - 1) < 1e-5 for row in rows)
    missing = subprocess.run([sys.executable, "-m", "dlcli", "predict", str(tmp_path / "run"),
                              str(tmp_path / "nowhere")], env=faults.env(), capture_output=True, text=True)
    assert missing.returncode == 3 and "nowhere does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_bad_file_stops_training_before_the_first_step_or_is_skipped_and_counted(
        tmp_path: Path, photos: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, _, _ = photos
    (folder / "dark" / "broken.jpg").write_bytes((folder / "dark" / "00.jpg").read_bytes()[:100])
    path = _write_spec(tmp_path / "folder.toml", folder_spec(folder))
    failed = subprocess.run(_cli(path, "--run-dir", str(tmp_path / "run")), env=faults.env(CI="true"),
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 3 and "Traceback" not in failed.stderr
    assert f"error: data.train: {folder}: 1 of 37 image files cannot be read" in failed.stderr
    assert "broken.jpg: truncated" in failed.stderr and not (tmp_path / "run" / "checkpoints").exists()
    skipped = subprocess.run(_cli(path, "--run-dir", str(tmp_path / "run2"), "--json", "--set",
                                  'data.on_bad_file="skip"'), env=faults.env(CI="true"), capture_output=True,
                             text=True, timeout=120)
    assert skipped.returncode == 0, skipped.stderr
    start = json.loads(skipped.stdout.splitlines()[0])
    assert start["event"] == "start" and start["skipped_files"] == 1 and start["samples"] == 27


def test_folder_keys_with_a_registry_dataset_are_a_spec_error(tmp_path: Path) -> None:
    from dlcli.errors import SpecError

    doc = {"name": "digits", "data": {"dataset": "digits", "cache": "disk"}, "model": {"input": {"shape": [64]},
           "layers": [{"type": "dense", "units": 10, "activation": "softmax"}]},
           "train": {"loss": "sparse_categorical_crossentropy"}}
    with pytest.raises(SpecError, match=r'data.cache: applies to image_folder data, but data.dataset = "digits" is '
                                        r"a registry dataset; remove data.cache"):
        fit(doc, tmp_path / "run")
