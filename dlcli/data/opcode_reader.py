"""The opcodes of a Python pickle stream, read as data: (name, argument) pairs, nothing built and nothing run.

The opcodes that NumPy's object-array payloads use (protocols 0 to 4) are read with their arguments, under
the names the standard disassembler gives them. Any other opcode is named without its argument and ends the
reading (the caller refuses it); a byte that is no opcode, or a stream cut short, is a ValueError. What the
opcodes may build is decided by the caller (see object_arrays).
"""

from __future__ import annotations

import codecs
from typing import Any, Callable, Iterator

# opcode byte -> (name, how its argument is read)
_FIXED_INT = {b"K"[0]: ("BININT1", 1, False), b"M"[0]: ("BININT2", 2, False), b"J"[0]: ("BININT", 4, True),
              b"q"[0]: ("BINPUT", 1, False), b"r"[0]: ("LONG_BINPUT", 4, False), b"h"[0]: ("BINGET", 1, False),
              b"j"[0]: ("LONG_BINGET", 4, False), 0x80: ("PROTO", 1, False), 0x95: ("FRAME", 8, False)}
# counted arguments: (name, bytes of the count, whether the count is signed, how the bytes become the argument)
_COUNTED: dict[int, tuple[str, int, bool, Callable[[bytes], Any]]] = {
    0x8A: ("LONG1", 1, False, lambda b: int.from_bytes(b, "little", signed=True)),
    0x8B: ("LONG4", 4, True, lambda b: int.from_bytes(b, "little", signed=True)),
    b"C"[0]: ("SHORT_BINBYTES", 1, False, bytes),
    b"B"[0]: ("BINBYTES", 4, False, bytes),
    0x8E: ("BINBYTES8", 8, False, bytes),
    b"U"[0]: ("SHORT_BINSTRING", 1, False, lambda b: b.decode("latin-1")),
    b"T"[0]: ("BINSTRING", 4, True, lambda b: b.decode("latin-1")),
    0x8C: ("SHORT_BINUNICODE", 1, False, lambda b: b.decode("utf-8")),
    b"X"[0]: ("BINUNICODE", 4, False, lambda b: b.decode("utf-8")),
    0x8D: ("BINUNICODE8", 8, False, lambda b: b.decode("utf-8")),
}
_LINE: dict[int, tuple[str, Callable[[bytes], Any]]] = {
    b"I"[0]: ("INT", lambda b: {b"00": False, b"01": True}[b] if b in (b"00", b"01") else int(b)),
    b"L"[0]: ("LONG", lambda b: int(b.removesuffix(b"L"))),
    b"p"[0]: ("PUT", int),
    b"g"[0]: ("GET", int),
    b"S"[0]: ("STRING", lambda b: codecs.escape_decode(_unquoted(b))[0].decode("latin-1")),
    b"V"[0]: ("UNICODE", lambda b: b.decode("raw-unicode-escape")),
}
_BARE = {b"."[0]: "STOP", b"("[0]: "MARK", b"]"[0]: "EMPTY_LIST", b"a"[0]: "APPEND", b"e"[0]: "APPENDS",
         b"l"[0]: "LIST", b"t"[0]: "TUPLE", b")"[0]: "EMPTY_TUPLE", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3",
         b"N"[0]: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x93: "STACK_GLOBAL", b"R"[0]: "REDUCE",
         b"b"[0]: "BUILD", 0x94: "MEMOIZE"}

# the rest of protocols 0-5, which nothing here reads: their name is enough to refuse them
_UNREAD = {b"P"[0]: "PERSID", b"Q"[0]: "BINPERSID", b"d"[0]: "DICT", b"}"[0]: "EMPTY_DICT", b"i"[0]: "INST",
           b"o"[0]: "OBJ", b"s"[0]: "SETITEM", b"u"[0]: "SETITEMS", b"G"[0]: "BINFLOAT", b"F"[0]: "FLOAT",
           b"0"[0]: "POP", b"2"[0]: "DUP", b"1"[0]: "POP_MARK", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2",
           0x84: "EXT4", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
           0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER"}


def _unquoted(line: bytes) -> bytes:
    if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
        return line[1:-1]
    raise ValueError(f"a STRING argument {line[:20]!r} is not quoted")


def read_opcodes(payload: bytes) -> Iterator[tuple[str, Any]]:
    """Each opcode of the stream up to STOP (or up to one it does not read), as (name, argument or None)."""
    view, position, end = memoryview(payload), 0, len(payload)

    def take(count: int) -> bytes:
        nonlocal position
        if count < 0 or position + count > end:
            raise ValueError(f"the stream ends inside an opcode's argument at byte {position}")
        chunk = bytes(view[position:position + count])
        position += count
        return chunk

    def line() -> bytes:
        nonlocal position
        stop = payload.find(b"\n", position)
        if stop < 0:
            raise ValueError(f"the stream ends inside a line argument at byte {position}")
        chunk, position = payload[position:stop], stop + 1
        return chunk

    fixed_ints, bare = _FIXED_INT, _BARE
    while position < end:
        code = payload[position]
        position += 1
        fixed = fixed_ints.get(code)
        if fixed is not None:  # integers and memo slots: nearly every opcode of an int list, so read inline
            name, size, signed = fixed
            stop = position + size
            if stop > end:
                raise ValueError(f"the stream ends inside an opcode's argument at byte {position}")
            yield name, payload[position] if size == 1 else int.from_bytes(payload[position:stop], "little",
                                                                             signed=signed)
            position = stop
        elif code in bare:
            yield bare[code], None
            if code == 0x2E:  # STOP
                return
        elif code in _COUNTED:
            name, size, signed, convert = _COUNTED[code]
            yield name, convert(take(int.from_bytes(take(size), "little", signed=signed)))
        elif code in _LINE:
            name, convert = _LINE[code]
            yield name, convert(line())
        elif code == 0x63:  # GLOBAL: "module\nname\n", given as "module name" like the standard disassembler
            module = line().decode("utf-8")
            yield "GLOBAL", f"{module} {line().decode('utf-8')}"
        elif code in _UNREAD:
            yield _UNREAD[code], None
            return
        else:
            raise ValueError(f"byte {bytes([code])!r} at {position - 1} is not a pickle opcode")
    raise ValueError("the stream ends without STOP")
