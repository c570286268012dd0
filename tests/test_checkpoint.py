"""Checkpoints: exact round trips, atomic writes under failures and crashes, and every corruption caught."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load as plain_load
from safetensors.numpy import save as plain_safetensors

from dlcli.checkpoint import MAX_HEADER_BYTES, load_checkpoint, save_checkpoint, write_atomically
from dlcli.errors import CheckpointError

METADATA = {"spec": {"name": "mnist-mlp", "layers": [{"type": "dense", "units": 512}]},
            "step": 4220, "history": [{"loss": 0.2563, "val_loss": 0.129}], "learning_rate": 1e-3,
            "rng": {"state": 2**64 - 1}, "resumed": None}


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "dense/kernel": rng.normal(size=(4, 3)).astype(np.float32),
        "dense/bias": np.array([0.5, -1.25, 3.0], np.float32),
        "optimizer/iterations": np.asarray(7, np.int64),  # 0-d
        "tokens": np.array([0, 1, 255], np.uint8),
        "empty": np.zeros((0, 5), np.float32),
        "mean": rng.normal(size=(2, 2)),  # float64
    }


def _save(path: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    save_checkpoint(path, _arrays() if arrays is None else arrays, METADATA)
    return path


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _compose(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


DAMAGED = ("the file is damaged or not a dlcli checkpoint (restore it, or use the run's other checkpoint, best "
           "or last)")


def _assert_rejected(path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert info.value.exit_code == 4
    return message


def _edit_header(path: Path, edit) -> None:  # edit(header) changes the header in place
    header, payload = _split(path.read_bytes())
    edit(header)
    path.write_bytes(_compose(header, payload))


# --- round trips -----------------------------------------------------------------------------------------

def test_round_trip_keeps_names_dtypes_shapes_values_and_metadata(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays_back, metadata_back = load_checkpoint(_save(tmp_path / "last.safetensors", arrays))
    assert metadata_back == METADATA
    assert set(arrays_back) == set(arrays)
    for name, value in arrays.items():
        assert arrays_back[name].dtype == value.dtype, name
        assert arrays_back[name].shape == value.shape, name
        np.testing.assert_array_equal(arrays_back[name], value)
        assert arrays_back[name].flags["C_CONTIGUOUS"] and arrays_back[name].flags["WRITEABLE"]
    assert arrays_back["optimizer/iterations"].ndim == 0 and int(arrays_back["optimizer/iterations"]) == 7


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                   "uint8", "uint16", "uint32", "uint64", "bool"])
def test_round_trip_of_every_supported_dtype(tmp_path: Path, dtype: str) -> None:
    value = (np.arange(12) % 7).astype(dtype).reshape(3, 4)
    arrays, _ = load_checkpoint(_save(tmp_path / "c.safetensors", {"x": value}))
    assert arrays["x"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(arrays["x"], value)


def test_non_contiguous_and_big_endian_arrays_are_stored_as_their_values(tmp_path: Path) -> None:
    base = np.arange(12, dtype=">f4").reshape(3, 4)
    arrays, _ = load_checkpoint(_save(tmp_path / "c.safetensors", {"t": base.T, "s": base[:, ::2]}))
    np.testing.assert_array_equal(arrays["t"], base.T)
    np.testing.assert_array_equal(arrays["s"], base[:, ::2])
    assert arrays["t"].dtype == np.float32


def test_non_finite_floats_in_metadata_survive(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {}, {"history": [{"val_loss": float("nan")}, {"val_loss": float("inf")}]})
    _, metadata = load_checkpoint(path)
    assert np.isnan(metadata["history"][0]["val_loss"]) and metadata["history"][1]["val_loss"] == float("inf")


def test_checkpoint_is_a_plain_safetensors_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.safetensors")
    with safe_open(str(path), framework="numpy") as file:
        assert set(file.keys()) == set(_arrays())
        np.testing.assert_array_equal(file.get_tensor("dense/bias"), _arrays()["dense/bias"])
        assert json.loads(file.metadata()["dlcli"]) == METADATA
        assert file.metadata()["dlcli_format"] == "1"


@pytest.mark.parametrize("arrays, error", [
    ({"x": np.array(["a"], object)}, TypeError),
    ({"x": [1.0, 2.0]}, TypeError),
    ({"__metadata__": np.zeros(1)}, ValueError),
    ({"": np.zeros(1)}, ValueError),
])
def test_saving_what_safetensors_cannot_hold_is_a_bug_not_a_file(tmp_path: Path, arrays: dict, error: type) -> None:
    with pytest.raises(error):
        save_checkpoint(tmp_path / "c.safetensors", arrays, {})
    assert list(tmp_path.iterdir()) == []


# --- atomic writes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), RuntimeError("bug")])
def test_failed_replace_keeps_the_previous_file_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    path = _save(tmp_path / "last.safetensors")
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise failure

    monkeypatch.setattr(os, "replace", broken_replace)
    expected = CheckpointError if isinstance(failure, OSError) else RuntimeError
    with pytest.raises(expected) as info:
        save_checkpoint(path, {"other": np.ones(3, np.float32)}, {"new": True})
    if expected is CheckpointError:
        assert "last.safetensors" in str(info.value) and "No space left" in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_write_failing_half_way_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "last.safetensors")
    real_write = os.write

    def disk_full_half_way(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full_half_way)
    with pytest.raises(CheckpointError, match="last.safetensors"):
        save_checkpoint(path, {"big": np.ones(10_000, np.float32)}, {"new": True})
    monkeypatch.undo()
    arrays, metadata = load_checkpoint(path)
    assert metadata == METADATA and set(arrays) == set(_arrays())
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_process_killed_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    path = _save(tmp_path / "last.safetensors")
    # a real crash: no finally blocks run, so the half-written temp file stays behind
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        from pathlib import Path
        from dlcli.checkpoint import save_checkpoint
        real_write = os.write
        def write_half_then_die(fd, data):
            real_write(fd, bytes(data[:len(data) // 2]))
            os._exit(9)
        os.write = write_half_then_die
        save_checkpoint(Path({str(path)!r}), {{"big": np.ones(10_000, np.float32)}}, {{"new": True}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.safetensors.tmp-")
    arrays, metadata = load_checkpoint(path)
    assert metadata == METADATA and set(arrays) == set(_arrays())


def test_write_atomically_replaces_any_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_atomically(str(path), b'{"loss": 0.1}\n')  # type: ignore[arg-type]  # a str path works too
    assert path.read_bytes() == b'{"loss": 0.1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_saving_into_a_missing_folder_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        save_checkpoint(tmp_path / "nowhere" / "last.safetensors", {}, {})


def test_a_folder_that_cannot_be_written_is_the_error_not_the_clean_up(tmp_path: Path) -> None:
    """The clean-up of a temporary file that was never made fails too (EROFS on a read-only filesystem, ENOTDIR
    here, where the folder is a file): it used to replace the error naming the file with its own traceback."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match=r"^cannot write .*afile/summary\.json: Not a directory; check that"):
        write_atomically(tmp_path / "afile" / "summary.json", b"{}")
    assert (tmp_path / "afile").read_text() == "x"


def test_saving_replaces_an_existing_checkpoint(tmp_path: Path) -> None:
    path = _save(tmp_path / "last.safetensors")
    save_checkpoint(path, {"x": np.ones(2, np.float32)}, {"epoch": 2})
    arrays, metadata = load_checkpoint(path)
    assert metadata == {"epoch": 2} and list(arrays) == ["x"]


# --- every corruption is a CheckpointError naming the file -----------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    _assert_rejected(tmp_path / "best.safetensors", "does not exist")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "best.safetensors").mkdir()
    _assert_rejected(tmp_path / "best.safetensors", "not a file")


def test_truncation_anywhere_is_caught(tmp_path: Path) -> None:
    data = _save(tmp_path / "c.safetensors").read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    cuts = [0, 3, 7, 8, 9, 8 + header_size // 2, 8 + header_size - 1, 8 + header_size,
            8 + header_size + 1, (8 + header_size + len(data)) // 2, len(data) - 1]
    for cut in cuts:
        path = tmp_path / f"cut-{cut}.safetensors"
        path.write_bytes(data[:cut])
        _assert_rejected(path)


def test_truncated_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes(_save(path).read_bytes()[:-10])
    _assert_rejected(path, "truncated")
    path.write_bytes(b"\x01\x02")
    _assert_rejected(path, "truncated", "2 bytes")


@pytest.mark.parametrize("mask", [0x01, 0x10, 0x80])
def test_flipping_any_bit_anywhere_is_caught(tmp_path: Path, mask: int) -> None:
    data = _save(tmp_path / "c.safetensors", {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                                              "n": np.asarray(3, np.int64)}).read_bytes()
    path = tmp_path / "flipped.safetensors"
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= mask
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="flipped.safetensors"):
            load_checkpoint(path)


def test_flipped_payload_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.safetensors")
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0x04
    path.write_bytes(damaged)
    _assert_rejected(path, "the file is corrupt: its checksum does not match")


def test_changed_metadata_is_a_checksum_mismatch(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.safetensors")
    _edit_header(path, lambda h: h["__metadata__"].update(dlcli=json.dumps({**METADATA, "step": 4221})))
    _assert_rejected(path, "checksum does not match")


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_wrong_header_length(tmp_path: Path, delta: int) -> None:
    path = _save(tmp_path / "c.safetensors")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    path.write_bytes(struct.pack("<Q", n + delta) + data[8:])
    _assert_rejected(path)


def test_absurd_header_length(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    with path.open("wb") as file:
        file.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        file.truncate(MAX_HEADER_BYTES + 100)  # sparse: the length fits the file but not the limit
    _assert_rejected(path, "header length")
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    _assert_rejected(path, "header length")


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n", b"\x89PNG\r\n\x1a\n" + bytes(64),
                                     b"PK\x03\x04" + bytes(100)])
def test_file_that_is_not_safetensors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    _assert_rejected(path)


@pytest.mark.parametrize("header_text, fragment", [
    (b"not json at all", "not valid JSON"),
    (b"[1, 2, 3]", "invalid type: sequence"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, '
     b'"a": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]}}', "invalid offset for tensor `a`"),
])
def test_header_that_is_not_a_json_object(tmp_path: Path, header_text: bytes, fragment: str) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes(struct.pack("<Q", len(header_text)) + header_text + bytes(8))
    _assert_rejected(path, fragment, DAMAGED)


@pytest.mark.parametrize("edit, fragment", [
    (lambda h: h["dense/bias"].update(dtype="F33"), "unknown variant `F33`"),
    (lambda h: h["dense/bias"].update(dtype="BF16"), "invalid shape, data type, or offset"),
    (lambda h: h["dense/bias"].update(shape=[4]), "invalid shape, data type, or offset"),
    (lambda h: h["dense/bias"].update(shape=[-3]), "integer `-3`, expected usize"),
    (lambda h: h["dense/bias"].update(shape="3"), 'string "3", expected a sequence'),
    (lambda h: h["dense/bias"].update(data_offsets=[0]), "expected a tuple of size 2"),
    (lambda h: h["dense/bias"].update(data_offsets=[10**6, 10**6 + 12]), "invalid offset for tensor"),
    (lambda h: h["dense/bias"].update(extra=1), "exactly dtype, shape and data_offsets"),
    (lambda h: h.update(junk=[1, 2]), "expected string or map"),
    (lambda h: h.update(__metadata__={"dlcli": 3}), "integer `3`, expected a string"),
])
def test_malformed_tensor_entries(tmp_path: Path, edit, fragment: str) -> None:
    # the safetensors library finds all but the extra field, in its own words
    path = _save(tmp_path / "c.safetensors")
    _edit_header(path, edit)
    _assert_rejected(path, fragment, DAMAGED)


def test_overlapping_offsets(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": np.zeros(2, np.float32), "b": np.ones(2, np.float32)}, {})

    def overlap(header: dict) -> None:
        header["b"]["data_offsets"] = header["a"]["data_offsets"]
    _edit_header(path, overlap)
    _assert_rejected(path, "invalid offset for tensor", DAMAGED)  # names a or b: the library sorts equal offsets


def test_gap_and_trailing_bytes_in_the_payload(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": np.zeros(2, np.float32)}, {})
    header, payload = _split(path.read_bytes())
    path.write_bytes(_compose(header, payload + b"\0\0\0\0"))
    _assert_rejected(path, "do not cover the bytes after its header exactly", DAMAGED)
    header["a"]["data_offsets"] = [4, 12]
    path.write_bytes(_compose(header, b"\0\0\0\0" + payload))
    _assert_rejected(path, "invalid offset for tensor `a`", DAMAGED)


def test_plain_safetensors_file_without_dlcli_metadata(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(plain_safetensors({"w": np.zeros(3, np.float32)}))
    _assert_rejected(path, "without dlcli metadata")
    path.write_bytes(plain_safetensors({"w": np.zeros(3, np.float32)}, metadata={"format": "pt"}))
    _assert_rejected(path, "without dlcli metadata")


def test_other_format_version(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.safetensors")
    _edit_header(path, lambda h: h["__metadata__"].update(dlcli_format="2"))
    _assert_rejected(path, "format version '2'")


def test_metadata_that_is_not_a_json_object(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.safetensors")
    _edit_header(path, lambda h: h["__metadata__"].update(dlcli="{oops"))
    _assert_rejected(path, "metadata is not valid JSON")
    _edit_header(path, lambda h: h["__metadata__"].update(dlcli="[1]"))
    _assert_rejected(path, "expected an object")


def test_duplicate_names_the_library_accepts_are_refused(tmp_path: Path) -> None:
    header = (b'{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, '
              b'"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}')
    data = struct.pack("<Q", len(header)) + header + bytes(4)
    assert list(plain_load(data)) == ["a"]  # safetensors keeps the last of the two and says nothing
    path = tmp_path / "c.safetensors"
    path.write_bytes(data)
    _assert_rejected(path, "duplicate keys ['a']", DAMAGED)


# BF16: NumPy cannot hold it, unless ml_dtypes is installed (onnx brings it, so the test extra does): then the
# library reads it and dlcli's own dtype check refuses it; refused either way, in either words
@pytest.mark.parametrize("dtype, size, fragments", [("C64", 8, ("unknown dtype 'C64'",)),
                                                    ("BF16", 2, ("a dtype NumPy cannot hold", "unknown dtype 'BF16'"))])
def test_dtypes_the_library_reads_and_dlcli_never_writes_are_refused(tmp_path: Path, dtype: str, size: int,
                                                                     fragments: tuple[str, ...]) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes(_compose({"x": {"dtype": dtype, "shape": [1], "data_offsets": [0, size]}}, bytes(size)))
    message = _assert_rejected(path, DAMAGED)
    assert any(fragment in message for fragment in fragments), message


def test_bytes_read_elsewhere_load_like_the_file_and_are_checked_the_same(tmp_path: Path) -> None:
    # the MPI path: one rank reads the file and sends its bytes to the others
    path = _save(tmp_path / "last.safetensors")
    arrays, metadata = load_checkpoint(path, content=path.read_bytes())
    assert metadata == METADATA
    for name, value in _arrays().items():
        np.testing.assert_array_equal(arrays[name], value)
        assert arrays[name].dtype == value.dtype and arrays[name].flags["WRITEABLE"]
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0x04
    with pytest.raises(CheckpointError, match="last.safetensors: the file is corrupt: its checksum does not match"):
        load_checkpoint(path, content=bytes(damaged))
    with pytest.raises(CheckpointError, match=r"last.safetensors: it is truncated: 5 bytes"):
        load_checkpoint(path, content=bytes(damaged[:5]))
