"""The image folder reader on folders the tests write: Keras' classes and order, class_names, labels from a CSV,
links, every bad file named before training (or skipped and counted), and the lazy images it returns."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dlcli import registry
from dlcli.data import InputSlot, ReadRequest, TargetSlot, read_examples
from dlcli.data.image_files import ImageFiles
from dlcli.errors import DataError, SpecError
from dlcli.spec.models import DataSpec
from tests.data.image_trees import pixels_of, write_image_tree


def request(path: Path, targets: bool = True, shape: tuple[int, ...] = (6, 5, 3), width: int = 3,
            schema: dict | None = None, learn: bool = True, **keys: Any) -> ReadRequest:
    """A request for a model with one image input `image` and one classifier output `label` of `width` classes."""
    data = DataSpec(train=path, image_size=list(shape[:2]), **keys)
    slots = {"label": TargetSlot("sparse_categorical_crossentropy", width, class_names=True, class_ids=True)}
    return ReadRequest({"image": InputSlot("float32", shape)}, slots if targets else None, data,
                       {} if schema is None else schema, learn)


def test_classes_are_the_sorted_subfolders_and_files_come_in_keras_order(tmp_path: Path) -> None:
    files = write_image_tree(tmp_path / "photos", {"owls": 2, "cats": 3, "dogs": 1})
    (tmp_path / "photos" / ".hidden").mkdir()  # left out, as Keras leaves dot-folders out
    (tmp_path / "photos" / "cats" / "notes.md").write_text("not an image: its name says so, so it is not read")
    (tmp_path / "photos" / "cats" / "more").mkdir()
    Image.fromarray(pixels_of(0, 9)).save(tmp_path / "photos" / "cats" / "more" / "deep.PNG")
    schema: dict = {}
    read = read_examples(tmp_path / "photos", request(tmp_path / "photos", schema=schema))
    images = read.inputs["image"]
    assert isinstance(images, ImageFiles) and images.shape == (7, 6, 5, 3) and images.dtype == np.uint8
    assert schema["classes"] == {"label": ["cats", "dogs", "owls"]}
    assert read.targets["label"].tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert images.paths() == [str(p) for p in files["cats"]] + [str(tmp_path / "photos/cats/more/deep.PNG")] + \
        [str(p) for p in files["dogs"] + files["owls"]]
    decoded = images[np.arange(7)]
    assert [int(image[0, 0, 0]) for image in decoded] == [0, 1, 2, 9, 40, 80, 81]
    assert np.array_equal(decoded[4], pixels_of(1, 0))
    assert schema["files"]["checked"] == 7 and schema["files"]["skipped"] == 0


def test_class_names_pick_and_order_the_classes(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"owls": 2, "cats": 3, "dogs": 1})
    schema: dict = {}
    read = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2, schema=schema,
                                                      class_names=["owls", "cats"]))
    assert schema["classes"]["label"] == ["owls", "cats"] and read.targets["label"].tolist() == [0, 0, 1, 1, 1]
    assert [int(image[0, 0, 0]) for image in read.inputs["image"][np.arange(5)]] == [80, 81, 0, 1, 2]
    with pytest.raises(SpecError, match=r"data.class_names: \['bats'\] are not subfolders of .*photos; its class "
                                        r"folders are \['cats', 'dogs', 'owls'\]"):
        read_examples(tmp_path / "photos", request(tmp_path / "photos", class_names=["bats", "cats"]))


def test_an_empty_class_folder_stays_a_class_as_in_keras(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 2, "dogs": 2})
    (tmp_path / "photos" / "birds").mkdir()
    schema: dict = {}
    read = read_examples(tmp_path / "photos", request(tmp_path / "photos", schema=schema))
    assert schema["classes"]["label"] == ["birds", "cats", "dogs"] and read.targets["label"].tolist() == [1, 1, 2, 2]
    with pytest.raises(DataError) as info:  # the class count must still fit the output, and the message says why
        read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2))
    assert str(info.value).endswith("the training data has 3 class names (birds, cats, dogs), but the output has 2 "
                                    "units, one per class; give it 3 units, or fix the labels (class folder 'birds' "
                                    "holds no image files: remove it, or list the classes in data.class_names)")


def test_labels_from_a_csv_of_path_and_label(tmp_path: Path) -> None:
    files = write_image_tree(tmp_path / "photos", {"a": 3})
    (tmp_path / "labels.csv").write_text("path,label\na/002.png,dog\na/000.png,cat\na/001.png,dog\n")
    schema: dict = {}
    read = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2, schema=schema,
                                                      labels=tmp_path / "labels.csv"))
    assert schema["classes"]["label"] == ["cat", "dog"] and read.targets["label"].tolist() == [1, 0, 1]
    assert read.inputs["image"].paths() == [str(files["a"][2]), str(files["a"][0]), str(files["a"][1])]
    (tmp_path / "bad.csv").write_text("path,label\n../outside.png,cat\n")
    with pytest.raises(DataError, match=r"names '../outside.png': paths must be relative to .*photos and stay"):
        read_examples(tmp_path / "photos", request(tmp_path / "photos", labels=tmp_path / "bad.csv"))
    (tmp_path / "headless.csv").write_text("a/000.png,cat\n")
    with pytest.raises(DataError, match=r"must start with the header line path,label \(found a/000.png,cat\)"):
        read_examples(tmp_path / "photos", request(tmp_path / "photos", labels=tmp_path / "headless.csv"))


def test_a_labels_csv_listing_a_file_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    # trained as two examples, one a cat and one a dog, with exit 0 before
    write_image_tree(tmp_path / "photos", {"a": 3})
    (tmp_path / "labels.csv").write_text("path,label\na/000.png,cat\na/001.png,dog\n./a/000.png,dog\n")
    with pytest.raises(DataError, match=r"labels.csv, lines 2 and 4: lists './a/000.png' with two labels, 'cat' and "
                                        r"'dog'; keep one line per file"):
        read_examples(tmp_path / "photos", request(tmp_path / "photos", labels=tmp_path / "labels.csv"))
    (tmp_path / "labels.csv").write_text("path,label\na/000.png,cat\na/001.png,dog\na/001.png,dog\n")
    with pytest.raises(DataError, match=r"lines 3 and 4: lists 'a/001.png' twice with the same label"):
        read_examples(tmp_path / "photos", request(tmp_path / "photos", labels=tmp_path / "labels.csv"))


def test_links_to_folders_are_followed_only_when_asked_and_a_loop_ends(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 2, "dogs": 1})
    write_image_tree(tmp_path / "elsewhere", {"extra": 2})
    (tmp_path / "photos" / "cats" / "linked").symlink_to(tmp_path / "elsewhere" / "extra")
    (tmp_path / "photos" / "cats" / "loop").symlink_to(tmp_path / "photos" / "cats")  # back up the tree
    plain = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2))
    assert len(plain.inputs["image"]) == 3
    followed = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2, follow_links=True))
    assert len(followed.inputs["image"]) == 5  # the linked folder's two, the loop's folder once
    assert followed.targets["label"].tolist() == [0, 0, 0, 0, 1]


def test_every_bad_file_is_named_at_once_before_training(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 3, "dogs": 3})
    cats = tmp_path / "photos" / "cats"
    whole = (cats / "000.png").read_bytes()
    (cats / "truncated.png").write_bytes(whole[:len(whole) // 2])
    (cats / "empty.jpg").write_bytes(b"")
    (cats / "text.png").write_text("hello")
    (cats / "loop_a.png").symlink_to(cats / "loop_b.png")
    (cats / "loop_b.png").symlink_to(cats / "loop_a.png")
    with pytest.raises(DataError) as info:
        read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2))
    message = str(info.value)
    assert info.value.exit_code == 3
    assert message.startswith(f"{tmp_path / 'photos'}: 5 of 11 image files cannot be read; fix or remove them, or "
                              f"set data.on_bad_file = \"skip\" to leave them out:\n")
    assert f"  {cats / 'empty.jpg'}: an empty file (0 bytes)" in message
    assert f"  {cats / 'text.png'}: not an image Pillow can read" in message
    assert f"  {cats / 'truncated.png'}: truncated" in message
    assert f"  {cats / 'loop_a.png'}: is a symbolic link that loops" in message
    schema: dict = {}
    read = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2, schema=schema,
                                                      on_bad_file="skip"))
    assert len(read.inputs["image"]) == 6 and read.targets["label"].tolist() == [0, 0, 0, 1, 1, 1]
    assert schema["files"]["checked"] == 11 and schema["files"]["skipped"] == 5


def test_many_bad_files_are_counted_after_the_first_twenty(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 1})
    for index in range(25):
        (tmp_path / "photos" / "cats" / f"bad{index:02d}.png").write_bytes(b"")
    with pytest.raises(DataError) as info:
        read_examples(tmp_path / "photos", request(tmp_path / "photos", width=1))
    lines = str(info.value).splitlines()
    assert lines[0].endswith("25 of 26 image files cannot be read; fix or remove them, or set data.on_bad_file = "
                             "\"skip\" to leave them out:")
    assert len(lines) == 22 and lines[-1] == "  and 5 more"


def test_the_model_input_must_take_the_decoded_shape(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 1, "dogs": 1})
    data = DataSpec(train=tmp_path / "photos")  # Keras' default image_size, [256, 256]
    slots = {"label": TargetSlot("sparse_categorical_crossentropy", 2, class_ids=True)}
    with pytest.raises(SpecError) as info:
        read_examples(tmp_path / "photos", ReadRequest({"image": InputSlot("float32", (180, 180, 1))}, slots, data))
    assert str(info.value) == ("data.image_size: the images are decoded to [256, 256, 3] (data.image_size = "
                               "[256, 256], color_mode = \"rgb\"), but the model's input 'image' takes [180, 180, 1]; "
                               "set data.image_size = [180, 180] and data.color_mode = \"grayscale\", or change the "
                               "input's shape")


def test_a_validation_folder_counts_classes_as_training_did(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "train", {"cats": 1, "dogs": 1, "owls": 1})
    write_image_tree(tmp_path / "validation", {"owls": 2})
    schema = {"classes": {"label": ["cats", "dogs", "owls"]}}
    read = read_examples(tmp_path / "validation", request(tmp_path / "validation", schema=schema, learn=False))
    assert read.targets["label"].tolist() == [2, 2]
    write_image_tree(tmp_path / "other", {"bats": 1})
    with pytest.raises(DataError, match=r"other: class 'bats' was not among the training data's classes"):
        read_examples(tmp_path / "other", request(tmp_path / "other", schema=schema, learn=False))


def test_predict_reads_one_image_a_folder_or_a_list_of_paths(tmp_path: Path) -> None:
    files = write_image_tree(tmp_path / "photos", {"cats": 2, "dogs": 1}, suffix=".bmp")
    one = read_examples(files["dogs"][0], request(files["dogs"][0], targets=False))
    assert one.sources == [str(files["dogs"][0])] and np.array_equal(one.inputs["image"][0], pixels_of(1, 0))
    folder = read_examples(tmp_path / "photos", request(tmp_path / "photos", targets=False))
    assert folder.sources == [str(p) for p in files["cats"] + files["dogs"]]
    (tmp_path / "list.txt").write_text("photos/dogs/000.bmp\n\nphotos/cats/001.bmp\n")
    listed = read_examples(tmp_path / "list.txt", request(tmp_path / "list.txt", targets=False))
    assert listed.sources == [str(tmp_path / "photos/dogs/000.bmp"), str(tmp_path / "photos/cats/001.bmp")]
    assert [int(image[0, 0, 0]) for image in listed.inputs["image"][np.arange(2)]] == [40, 1]
    with pytest.raises(DataError, match=r"000.bmp is one image, without a label"):
        read_examples(files["dogs"][0], request(files["dogs"][0]))


def test_folder_keys_on_another_kind_of_data_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 6, 5, 3), np.float32), y=np.zeros(2, np.int64))
    with pytest.raises(SpecError, match=r"data.cache: applies to image_folder data, but .*data.npz is read by the "
                                        r"npz reader \(arrays by name in an .npz archive.*\); remove data.cache"):
        read_examples(tmp_path / "data.npz", request(tmp_path / "data.npz", cache="memory"))


def test_the_lazy_images_gather_select_and_fill_from_several_threads(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 6, "dogs": 6})
    images = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=2)).inputs["image"]
    expected = np.stack([pixels_of(c, i) for c in (0, 1) for i in range(6)])
    assert np.array_equal(np.asarray(images), expected)
    assert np.array_equal(images[3:5], expected[3:5]) and np.array_equal(images[7], expected[7])
    assert np.array_equal(images[expected[:, 0, 0, 0] > 42], expected[9:])
    part = images.select(np.array([11, 2, 5]))
    assert len(part) == 3 and np.array_equal(part[np.arange(3)], expected[[11, 2, 5]])
    out = np.zeros((12, 6, 5, 3), np.uint8)
    order = np.random.default_rng(0).permutation(12)
    workers = [threading.Thread(target=images.fill, args=(order[k::3], out[k::3])) for k in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert np.array_equal(out, expected[order])
    report = images.describe()
    assert report["sizes"] == {"5x6": 12} and report["modes"] == {"RGB": 12} and report["cache"] == "none"


def test_a_file_damaged_after_the_check_names_the_file_and_how_to_resume(tmp_path: Path) -> None:
    files = write_image_tree(tmp_path / "photos", {"cats": 2})
    images = read_examples(tmp_path / "photos", request(tmp_path / "photos", width=1)).inputs["image"]
    os.unlink(files["cats"][1])
    with pytest.raises(DataError, match=r"001.png: does not exist; check the path; it passed the check before "
                                        r"training .*: replace it with a whole copy, then resume with dlcli train "
                                        r"RUN --resume \(a run cannot resume without it: removing it changes the "
                                        r"examples, so then train a new run\)"):
        images[np.arange(2)]


def test_the_data_report_hook_tells_sizes_modes_formats_and_skipped_files(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "photos", {"cats": 2, "dogs": 1}, size=(6, 5))
    Image.fromarray(pixels_of(0, 7, (9, 4))[:, :, 0], "L").save(tmp_path / "photos" / "cats" / "grey.png")
    Image.fromarray(pixels_of(1, 7, (6, 5))).convert("RGBA").save(tmp_path / "photos" / "dogs" / "rgba.png")
    Image.fromarray(pixels_of(1, 8, (6, 5))).save(tmp_path / "photos" / "dogs" / "plain.bmp")
    (tmp_path / "photos" / "dogs" / "empty.jpg").write_bytes(b"")
    schema: dict = {"classes": {"label": ["cats", "dogs", "owls"]}}
    reader = registry.readers.get("image_folder")()
    report = reader.describe(tmp_path / "photos", request(tmp_path / "photos", schema=schema, on_bad_file="skip"))
    assert report["images"] == 6 and report["decoded_shape"] == [6, 5, 3] and report["cache"] == "none"
    assert report["sizes"] == {"5x6": 5, "4x9": 1}  # width x height, as the files hold them
    assert report["modes"] == {"RGB": 4, "L": 1, "RGBA": 1}
    assert report["formats"] == {"PNG": 5, "BMP": 1}
    assert report["files_checked"] == 7 and report["skipped_files"] == 1 and report["check_seconds"] >= 0
    assert schema == {"classes": {"label": ["cats", "dogs", "owls"]}}  # the caller's schema is left as it was
