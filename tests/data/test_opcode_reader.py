"""read_opcodes against the standard library's disassembler, on the streams NumPy writes for object arrays."""

from __future__ import annotations

import pickle
import pickletools
import re

import numpy as np
import pytest

from dlcli.data.opcode_reader import read_opcodes


def _reference(payload: bytes) -> list[tuple[str, object]]:
    return [(opcode.name, arg) for opcode, arg, _ in pickletools.genops(payload)]


def _ragged() -> np.ndarray:
    rows = np.empty(4, dtype=object)
    rows[:] = [[1, 2, 3], [], [255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 40, -(2 ** 70)], list(range(300))]
    return rows


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_every_opcode_and_argument_of_a_numpy_object_array_matches_the_disassembler(protocol: int) -> None:
    payload = pickle.dumps(_ragged(), protocol=protocol)
    assert list(read_opcodes(payload)) == _reference(payload)


@pytest.mark.parametrize("payload", [
    b"S'b\\x00c'\np0\n.",  # Python 2 str, protocol 0
    b"U\x01bq\x00.",  # Python 2 str, protocol 2
    b"T\x03\x00\x00\x00abc.",
    b"I01\nI00\nI-42\nL12345678901234567890L\n.",
    b"(lp0\nI1\naI2\na.",
    b"Vcaf\\u00e9\n.",
    b"cnumpy\ndtype\nq\x00.",
])
def test_python_2_and_protocol_0_streams_match_the_disassembler(payload: bytes) -> None:
    assert list(read_opcodes(payload)) == _reference(payload)


@pytest.mark.parametrize("payload, message", [
    (pickle.dumps(_ragged(), protocol=2)[:-40], "the stream ends"),
    (b"K", "the stream ends inside an opcode's argument"),
    (b"X\xff\x00\x00\x00ab", "the stream ends inside an opcode's argument"),
    (b"I12", "the stream ends inside a line argument"),
    (b"K\x01", "the stream ends without STOP"),
    (b"K\x01\xff.", "byte b'\\xff' at 2 is not a pickle opcode"),
])
def test_a_truncated_stream_or_an_unknown_opcode_is_a_value_error(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        list(read_opcodes(payload))


@pytest.mark.parametrize("payload, name", [(b"K\x01G@\t!\xfbTD-\x18.", "BINFLOAT"), (b"}q\x00.", "EMPTY_DICT"),
                                           (b"\x96\x03\x00\x00\x00\x00\x00\x00\x00abc.", "BYTEARRAY8")])
def test_an_opcode_it_does_not_read_is_named_and_ends_the_reading(payload: bytes, name: str) -> None:
    read = list(read_opcodes(payload))
    assert read[-1] == (name, None)
    assert [op for op, _ in read] == [op for op, _ in _reference(payload)][:len(read)]
