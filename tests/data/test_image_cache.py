"""The decoded-image cache: kept in RAM or in a memory-mapped file under the dataset cache, named by the files'
contents and the decode options, written atomically, and never trusted when damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import InputSlot, ReadRequest, TargetSlot, read_examples
from dlcli.data import image_cache, image_files
from dlcli.data.prefetch import prefetched
from dlcli.spec.models import DataSpec
from tests.data.image_trees import pixels_of, write_image_tree


def images_of(folder: Path, cache: str, **keys: object) -> image_files.ImageFiles:
    """The lazy images of an image folder of 2 classes read with data.cache = `cache`."""
    data = DataSpec(train=folder, image_size=[6, 5], cache=cache, **keys)
    slots = {"label": TargetSlot("sparse_categorical_crossentropy", 2, class_ids=True)}
    return read_examples(folder, ReadRequest({"image": InputSlot("float32", (6, 5, 3))}, slots, data)).inputs["image"]


class CountingDecode:
    """Counts the files decoded (the real decode runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count, self.real = 0, image_files.decode
        monkeypatch.setattr(image_files, "decode", self)

    def __call__(self, *args: object) -> np.ndarray:
        self.count += 1
        return self.real(*args)


def expected_pixels() -> np.ndarray:
    return np.stack([pixels_of(c, i) for c in (0, 1) for i in range(3)])


def test_memory_cache_decodes_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    decoded = CountingDecode(monkeypatch)
    images = images_of(tmp_path / "photos", "memory")
    for _ in range(3):
        assert np.array_equal(images[np.arange(6)], expected_pixels())
    assert decoded.count == 6 and images.describe()["decoded"] == 6
    uncached = images_of(tmp_path / "photos", "none")
    uncached[np.arange(6)], uncached[np.arange(6)]
    assert decoded.count == 18


def test_disk_cache_is_finished_atomically_and_reused_by_a_later_run(tmp_path: Path, isolated_data_env: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    decoded = CountingDecode(monkeypatch)
    images = images_of(tmp_path / "photos", "disk")
    folder = isolated_data_env / "images"
    assert list(folder.glob("*.npy")) == [] and len(list(folder.glob(".*.partial-*"))) == 1
    images[np.arange(4)]
    assert list(folder.glob("*.json")) == []  # not whole yet: no record, so no later run trusts it
    images[np.arange(6)]
    [finished] = folder.glob("*.npy")
    record = json.loads(finished.with_suffix(".json").read_text())
    assert record["shape"] == [6, 6, 5, 3] and list(folder.glob(".*.partial-*")) == []
    assert np.array_equal(np.load(finished), expected_pixels()) and decoded.count == 6
    later = images_of(tmp_path / "photos", "disk")  # another run: the same files and options
    assert np.array_equal(later[np.arange(6)], expected_pixels()) and decoded.count == 6
    assert later.describe()["complete"] is True


def test_the_cache_key_follows_contents_and_decode_options(tmp_path: Path, isolated_data_env: Path) -> None:
    files = write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    images_of(tmp_path / "photos", "disk")[np.arange(6)]
    images_of(tmp_path / "photos", "disk", interpolation="nearest")[np.arange(6)]
    os.utime(files["cats"][0], (0, 0))  # the time changes, not the contents: the same cache
    images_of(tmp_path / "photos", "disk")[np.arange(6)]
    assert len(list((isolated_data_env / "images").glob("*.npy"))) == 2
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3}, size=(6, 5), suffix=".bmp")  # new files
    changed = images_of(tmp_path / "photos", "disk")
    assert len(changed) == 12 and np.array_equal(changed[np.arange(12)][[0, 2, 4]], expected_pixels()[:3])
    assert len(list((isolated_data_env / "images").glob("*.npy"))) == 3


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "drop the record", "garble the record"])
def test_a_damaged_cache_is_rebuilt_never_trusted(tmp_path: Path, isolated_data_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    images_of(tmp_path / "photos", "disk")[np.arange(6)]
    [finished] = (isolated_data_env / "images").glob("*.npy")
    record = finished.with_suffix(".json")
    content = bytearray(finished.read_bytes())
    if damage == "flip a byte":
        content[-5] ^= 0xFF
        finished.write_bytes(bytes(content))
    elif damage == "truncate":
        finished.write_bytes(bytes(content[:-40]))
    elif damage == "drop the record":
        record.unlink()
    else:
        record.write_text("{not json")
    decoded = CountingDecode(monkeypatch)
    images = images_of(tmp_path / "photos", "disk")
    assert np.array_equal(images[np.arange(6)], expected_pixels()) and decoded.count == 6
    assert np.array_equal(np.load(finished), expected_pixels())  # built again, whole


def test_a_killed_runs_half_built_cache_is_removed(tmp_path: Path, isolated_data_env: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    living = images_of(tmp_path / "photos", "disk")  # opened, nothing decoded: its partial file lives with it
    [ours] = (isolated_data_env / "images").glob(".*.partial-*")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    key = ours.name.split(".npy.partial-")[0]
    abandoned = ours.with_name(f"{key}.npy.partial-{dead.stdout.strip()}-0000dead")
    abandoned.write_bytes(b"half")
    images_of(tmp_path / "photos", "disk")
    assert not abandoned.exists() and ours.exists()  # a live process's own file is kept
    del living
    assert not ours.exists()  # an unfinished cache goes with the images that were building it


def test_a_complete_cache_is_gathered_in_the_callers_thread_as_an_array_is(tmp_path: Path, isolated_data_env: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    order = [np.array([4, 0, 4]), np.array([5, 1]), np.array([3, 2])]  # row 4 twice in one batch
    for cache in ("memory", "disk"):
        images = images_of(tmp_path / "photos", cache)
        assert not images.resident and not images.describe().get("complete", False)
        first = [batch["x"] for batch in prefetched({"x": images}, order)]  # decoded on the threads
        assert images.resident and (cache == "disk") == images.describe().get("complete", False)
        assert images.store is not None and images.store.count == 6  # the repeated row counted once
        filled: list[int] = []
        with monkeypatch.context() as patch:
            patch.setattr(image_files.ImageFiles, "fill", lambda self, index, out: filled.append(1))
            again = [batch["x"] for batch in prefetched({"x": images}, order)]
            part = images.select(np.array([5, 0]))[np.arange(2)]
        assert filled == []  # no task on the decode threads: one gather per batch, in this thread
        for batch, index, earlier in zip(again, order, first):
            assert np.array_equal(batch, expected_pixels()[index]) and np.array_equal(batch, earlier)
        assert np.array_equal(part, expected_pixels()[[5, 0]])
    later = images_of(tmp_path / "photos", "disk")  # a later run: the finished disk cache is complete at once
    assert later.resident and np.array_equal(later[np.array([2, 2, 1])], expected_pixels()[[2, 2, 1]])


def test_a_disk_cache_larger_than_half_the_memory_is_read_on_the_decode_threads(
        tmp_path: Path, isolated_data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    images_of(tmp_path / "photos", "disk")[np.arange(6)]  # built
    monkeypatch.setattr(image_cache, "_memory_bytes", lambda: 2 * 6 * 6 * 5 * 3 - 2)  # just too small
    decoded = CountingDecode(monkeypatch)
    later = images_of(tmp_path / "photos", "disk")
    assert later.describe()["complete"] is True and not later.resident
    batches = [batch["x"] for batch in prefetched({"x": later}, [np.array([5, 3]), np.array([0, 1, 2, 4])])]
    assert np.array_equal(np.concatenate(batches), expected_pixels()[[5, 3, 0, 1, 2, 4]]) and decoded.count == 0
