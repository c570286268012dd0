"""The reader registry and its one dispatcher: a reader by what a path is, one "unsupported" message built from the
registry, and room for folder readers and readers with options of their own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dlcli import registry
from dlcli.data import Examples, InputSlot, ReadRequest, TargetSlot, read_examples, reader_for
from dlcli.data.readers import Reader
from dlcli.errors import DataError, SpecError
from dlcli.registry import Registry, StrictSpec

KEYS = dict(inputs=None, targets=None, features=None, target=None, text=None, missing="error", options={})


def request(dtype: str = "float32", targets: bool = False, **keys: object) -> ReadRequest:
    """A request for a model with one input `input` of `dtype` and, with `targets`, one classifier output."""
    slots = {"dense": TargetSlot("sparse_categorical_crossentropy", 2, class_names=True, class_ids=True)}
    return ReadRequest({"input": InputSlot(dtype)}, slots if targets else None, SimpleNamespace(**(KEYS | keys)))


def test_every_reader_has_a_one_line_doc_and_accepts_something() -> None:
    assert registry.readers.names() == ["csv", "image_folder", "npy_pair", "npz", "parquet", "text_folder", "text_lines",
                                        "timeseries"]
    for entry in registry.readers:
        assert entry.doc and len(entry.doc) < 120, entry.name
        claims = entry.target.claims is not Reader.claims  # chosen by the spec's keys (timeseries), not a name
        assert issubclass(entry.target, Reader) and (entry.target.suffixes or entry.target.directory or claims), \
            entry.name


def test_no_two_readers_accept_the_same_suffix() -> None:
    claimed = [suffix for entry in registry.readers for suffix in entry.target.suffixes]
    assert len(claimed) == len(set(claimed)), claimed


@pytest.mark.parametrize(("name", "reader"), [("a.npz", "npz"), ("b.csv", "csv"), ("b.csv.gz", "csv"),
                                              ("run.1.5.csv", "csv"), ("x_1.5.npy", "npy_pair"),
                                              ("reviews.txt", "text_lines"), ("t.parquet", "parquet")])
def test_the_dispatcher_picks_the_reader_by_what_the_name_ends_with(name: str, reader: str) -> None:
    assert reader_for(Path("data") / name).name == reader


def test_a_missing_path_without_a_suffix_is_named_as_missing_not_unsupported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"photos does not exist; check the path \(a folder of images or texts"):
        reader_for(tmp_path / "photos")


@pytest.mark.parametrize("name", ["a.feather", "a.gz", "x_a.npy.gz", "a.CSV", ".csv"])
def test_a_path_no_reader_accepts_gets_the_one_message_listing_every_reader(name: str) -> None:
    with pytest.raises(DataError) as info:
        reader_for(Path("data") / name)
    message = str(info.value)
    assert message.startswith(f"{Path('data') / name}: unsupported data file; dlcli reads .csv or .csv.gz (a CSV "
                              f"table with a header row, its columns named by data.features and data.target); .png "
                              f"or .jpg or .jpeg or .bmp or .gif or .webp or a folder (images, one subfolder of them "
                              f"a class (or single images, for predict): PNG, JPEG, BMP, GIF or WebP); .npy "
                              f"(inputs in x_NAME.npy with their targets in y_NAME.npy beside it")
    assert ".npz (arrays by name in an .npz archive: x and y" in message and ".txt (one text a line" in message
    assert "a folder (UTF-8 .txt files, one example a file, one subfolder of them a class" in message


def test_a_folder_named_like_a_file_reaches_that_files_reader_which_says_it_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "data.npz").mkdir()
    assert reader_for(tmp_path / "data.npz").name == "npz"
    with pytest.raises(DataError, match=r"data.npz is a folder, not a file; check the path"):
        read_examples(tmp_path / "data.npz", request(targets=True))


def test_text_lines_feed_a_text_model_in_predict_but_not_training_or_a_numeric_model(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    path.write_text("good film\nbad, dull\n", encoding="utf-8")
    assert read_examples(path, request("string")).inputs["input"].tolist() == ["good film", "bad, dull"]
    with pytest.raises(DataError, match=r"new.txt: a .txt file holds texts only, one a line, without targets"):
        read_examples(path, request("string", targets=True))
    with pytest.raises(DataError, match=r"new.txt: a .txt file holds one text a line, .* this model takes numbers"):
        read_examples(path, request("float32"))


class ImageOptions(StrictSpec):
    """Options of a toy image reader."""

    image_size: tuple[int, int] = (32, 32)


def toy_readers() -> Registry:
    """A registry of a folder reader and a reader with options, as the coming readers will be registered."""
    readers = Registry("reader")

    @readers.register("class_folders")
    class ClassFolders(Reader):
        """Subfolders named by class, one example a file."""

        directory = True

        def read(self, path: Path, request: ReadRequest) -> Examples:
            files = sorted(path.glob("*/*"))
            classes = sorted({file.parent.name for file in files})
            return Examples({"input": np.array([[file.stat().st_size] for file in files], np.float32)},
                            {"dense": np.array([classes.index(file.parent.name) for file in files])})

    @readers.register("raw_image", spec=ImageOptions)
    class RawImage(Reader):
        """Raw bytes of one image."""

        suffixes = (".raw",)

        def read(self, path: Path, request: ReadRequest) -> Examples:
            height, width = request.options.image_size
            return Examples({"input": np.frombuffer(path.read_bytes(), np.uint8).reshape(1, height, width)})

    return readers


def test_a_folder_reader_and_a_reader_with_options_plug_in_by_registering_alone(tmp_path: Path) -> None:
    readers = toy_readers()
    for name, size in (("cat/a", 3), ("cat/b", 5), ("dog/c", 7)):
        (tmp_path / "pets" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pets" / name).write_bytes(b"x" * size)
    read = read_examples(tmp_path / "pets", request(targets=True), readers)
    assert read.inputs["input"].tolist() == [[3], [5], [7]] and read.targets["dense"].tolist() == [0, 0, 1]
    (tmp_path / "a.raw").write_bytes(bytes(range(6)))
    image = read_examples(tmp_path / "a.raw", request(options={"image_size": [2, 3]}), readers).inputs["input"]
    assert image.tolist() == [[[0, 1, 2], [3, 4, 5]]]
    with pytest.raises(SpecError, match=r"data.options.image_sise: Extra inputs are not permitted \(the raw_image "
                                        r"reader of .*a.raw takes these options: image_size\)"):
        read_examples(tmp_path / "a.raw", request(options={"image_sise": [2, 3]}), readers)
    with pytest.raises(DataError, match=r"a.bmp: unsupported data file; dlcli reads a folder \(subfolders named by "
                                        r"class, one example a file\); .raw \(raw bytes of one image\)"):
        read_examples(tmp_path / "a.bmp", request(), readers)


def test_a_folder_of_images_with_text_files_beside_them_is_still_an_image_folder(tmp_path: Path) -> None:
    # photo sets come with a README.txt beside the class folders, or an ATTRIBUTION.txt among a class's images:
    # the first file found decided, and made such a folder a text folder (train and predict both refused it)
    from tests.data.image_trees import write_image_tree, write_text_tree

    photos = tmp_path / "photos"
    write_image_tree(photos, {"cat": 3, "dog": 3})
    (photos / "README.txt").write_text("CC-BY photos")
    (photos / "cat" / "ATTRIBUTION.txt").write_text("by someone")
    assert reader_for(photos).name == "image_folder"
    mixed = tmp_path / "mixed"  # 3 .jpg and 3 .png against 4 captions a class: images, counted together
    write_image_tree(mixed, {"cat": 3, "dog": 3}, suffix=".jpg")
    write_image_tree(mixed, {"cat": 3, "dog": 3}, suffix=".png")
    for name in ("cat", "dog"):
        for index in range(4):
            (mixed / name / f"{index}.txt").write_text("a caption")
    assert reader_for(mixed).name == "image_folder"
    flat = tmp_path / "flat"  # a folder to predict on: its own files decide
    write_image_tree(flat, {"x": 3})
    for image in (flat / "x").iterdir():
        image.rename(flat / image.name)
    (flat / "x").rmdir()
    (flat / "LICENSE.txt").write_text("CC0")
    assert reader_for(flat).name == "image_folder"
    reviews = tmp_path / "reviews"
    write_text_tree(reviews, {"neg": ["bad", "awful"], "pos": ["good", "fine"]})
    write_image_tree(reviews / "pos", {"figures": 1})  # a picture among the texts: still a text folder
    (reviews / "cover.png").write_bytes((reviews / "pos" / "figures" / "000.png").read_bytes())
    assert reader_for(reviews).name == "text_folder"
