"""Text folders as Keras' text_dataset_from_directory reads them (aclImdb/train/pos/*.txt), a file that is not
UTF-8 named with exit 3, archives unpacked safely, and the aclImdb dataset from its archive."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dlcli import registry
from dlcli.data import InputSlot, ReadRequest, TargetSlot, catalog, load_dataset, read_examples
from dlcli.data.archives import unpacked
from dlcli.data.download import file_sha256
from dlcli.data.text_files import TextRows
from dlcli.errors import DataError
from dlcli.spec.models import DataSpec
from tests.data.image_trees import write_text_tree

REVIEWS = {"neg": ["Dull.", "A waste of two hours.\nTruly."], "pos": ["Loved it", "Great — c'est magnifique!"],
           "unsup": ["no label"]}


def request(path: Path, targets: bool = True, schema: dict | None = None, **keys: object) -> ReadRequest:
    data = DataSpec(train=path, **keys)
    slots = {"label": TargetSlot("binary_crossentropy", 1, class_names=True, binary=True)}
    return ReadRequest({"text": InputSlot("string", (1,))}, slots if targets else None, data,
                       {} if schema is None else schema)


def test_each_file_is_one_text_labelled_by_its_subfolder(tmp_path: Path) -> None:
    write_text_tree(tmp_path / "train", REVIEWS)
    schema: dict = {}
    read = read_examples(tmp_path / "train", request(tmp_path / "train", schema=schema, class_names=["neg", "pos"]))
    texts = read.inputs["text"]
    assert isinstance(texts, TextRows) and texts.shape == (4, 1) and texts.dtype.kind == "U"
    assert texts[np.arange(4)].tolist() == [[text] for text in REVIEWS["neg"] + REVIEWS["pos"]]
    assert read.targets["label"].tolist() == [0, 0, 1, 1] and schema["classes"] == {"label": ["neg", "pos"]}
    assert texts[np.array([3, 0])].dtype == np.dtype("<U25")  # as wide as that batch's longest text
    assert texts.describe()["words"]["max"] == 6
    part = texts.select(np.array([2]))
    assert part[np.arange(1)].tolist() == [["Loved it"]] and part.sources == [str(tmp_path / "train/pos/000.txt")]


def test_a_file_that_is_not_utf8_is_named_with_exit_3_or_skipped(tmp_path: Path) -> None:
    write_text_tree(tmp_path / "train", {"neg": ["bad"], "pos": ["good"]})
    (tmp_path / "train" / "pos" / "latin1.txt").write_bytes("très bien".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_examples(tmp_path / "train", request(tmp_path / "train"))
    assert info.value.exit_code == 3
    assert str(info.value) == (f"{tmp_path / 'train'}: 1 of 3 text files cannot be read; fix or remove them, or set "
                               f"data.on_bad_file = \"skip\" to leave them out:\n  {tmp_path / 'train/pos/latin1.txt'}"
                               f": not UTF-8 text (byte 0xe8 at offset 2 cannot be decoded); save it as UTF-8")
    schema: dict = {}
    read = read_examples(tmp_path / "train", request(tmp_path / "train", schema=schema, on_bad_file="skip"))
    assert read.targets["label"].tolist() == [0, 1] and schema["files"]["skipped"] == 1


def test_predict_takes_a_folder_of_text_files(tmp_path: Path) -> None:
    write_text_tree(tmp_path / "new", {"a": ["first"], "b": ["second", "third"]})
    read = read_examples(tmp_path / "new", request(tmp_path / "new", targets=False))
    assert read.inputs["text"][np.arange(3)][:, 0].tolist() == ["first", "second", "third"]
    assert read.sources == [str(tmp_path / "new/a/000.txt"), str(tmp_path / "new/b/000.txt"),
                            str(tmp_path / "new/b/001.txt")]


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(("member", "words"), [
    (_member("../evil"), "would be written outside the folder it is unpacked into"),
    (_member("/tmp/absolute"), "would be written outside"),
    (_member("aclImdb/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link (to '/etc/passwd')"),
    (_member("aclImdb/hard", tarfile.LNKTYPE, "aclImdb/README"), "is a link (to 'aclImdb/README')"),
    (_member("aclImdb/tty", tarfile.CHRTYPE), "is a device, pipe or other special file"),
    (_member("aclImdb/pipe", tarfile.FIFOTYPE), "is a device, pipe or other special file"),
])
def test_unpacking_refuses_escapes_links_and_devices_and_keeps_nothing(tmp_path: Path, member: tarfile.TarInfo,
                                                                       words: str) -> None:
    content = b"evil" if member.isfile() else None
    archive = _archive(tmp_path / "bad.tar.gz", [(_member("aclImdb/README"), b"fine"), (member, content)])
    target = tmp_path / "cache" / "unpacked"
    with pytest.raises(DataError) as info:
        unpacked(archive, target)
    assert f"member {member.name!r} {words}" in str(info.value)
    assert not (tmp_path / "evil").exists() and not target.exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no half tree, no temporary left


def test_unpacking_is_whole_or_not_at_all_and_happens_once(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "good.tar.gz", [(_member("top/a.txt"), b"A"), (_member("top/sub/b.txt"), b"B")])
    target = unpacked(archive, tmp_path / "cache" / "unpacked")
    assert (target / "top/sub/b.txt").read_text() == "B"
    (target / "top/a.txt").write_text("changed")
    assert (unpacked(archive, target) / "top/a.txt").read_text() == "changed"  # not unpacked twice
    torn = tmp_path / "cache" / "torn"
    (torn / "top").mkdir(parents=True)  # a tree from a killed run, never marked complete
    assert (unpacked(archive, torn) / "top/a.txt").read_text() == "A"
    (tmp_path / "cut.tar.gz").write_bytes(archive.read_bytes()[:30])
    with pytest.raises(DataError, match=r"cut.tar.gz cannot be unpacked .* delete it and download it again"):
        unpacked(tmp_path / "cut.tar.gz", tmp_path / "cache" / "cut")


def test_acl_imdb_reads_train_and_test_from_its_archive_without_unsup(tmp_path: Path, isolated_data_env: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    members = [(_member(f"aclImdb/{part}/{label}/{index}_7.txt"), f"{part} {label} {index}".encode())
               for part in ("train", "test") for label in ("neg", "pos") for index in range(2)]
    members.append((_member("aclImdb/train/unsup/0_0.txt"), b"unlabelled"))
    folder = isolated_data_env / "acl_imdb"
    folder.mkdir(parents=True)
    archive = _archive(folder / "aclImdb_v1.tar.gz", members)
    # the real archive is 84 MB: a small one stands in, pinned by its own sha256 as the real one is by TFDS's
    monkeypatch.setattr(catalog, "_ACL_IMDB", catalog.RemoteFile("aclImdb_v1.tar.gz", "https://example.invalid/",
                                                                 file_sha256(archive)))
    loaded = load_dataset("aclImdb")  # Keras' and the book's spelling, a synonym of acl_imdb
    assert loaded.info.name == "acl_imdb" and loaded.y_train.tolist() == [0, 0, 1, 1]
    assert loaded.x_train[np.arange(4)][:, 0].tolist() == ["train neg 0", "train neg 1", "train pos 0",
                                                           "train pos 1"]
    assert loaded.x_test[np.arange(1)].tolist() == [["test neg 0"]] and len(loaded.x_test) == 4


def test_acl_imdb_is_pinned_to_the_published_sha256() -> None:
    remote = catalog.dataset_info("acl_imdb").remote[0]
    assert remote.sha256 == "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
    assert remote.url == "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"


def test_the_data_report_hook_tells_text_lengths_and_skipped_files(tmp_path: Path) -> None:
    write_text_tree(tmp_path / "train", {"neg": ["Dull.", ""], "pos": ["Loved it a lot", "Great"]})
    (tmp_path / "train" / "pos" / "latin1.txt").write_bytes("très bien".encode("latin-1"))
    reader = registry.readers.get("text_folder")()
    report = reader.describe(tmp_path / "train", request(tmp_path / "train", on_bad_file="skip"))
    assert report["texts"] == 4 and report["empty"] == 1
    assert report["characters"] == {"min": 0, "median": 5.0, "mean": 6.0, "max": 14}
    assert report["words"] == {"min": 0, "median": 1.0, "mean": 1.5, "max": 4}
    assert report["files_checked"] == 5 and report["skipped_files"] == 1 and "check_seconds" not in report
