"""Keras' .npz files of object arrays (ragged lists of ints) read without unpickling: the pickle is parsed, never run.

NumPy stores an object array as a pickle of the ndarray: `_reconstruct(ndarray, (0,), b'b')`, then BUILD with
(version, shape, dtype('O8'), fortran, [element, ...]). Keras' imdb.npz and reuters.npz hold lists of ints
that way. The standard library's `pickletools.genops` splits the stream into opcodes and their arguments
without building or running anything; a small stack machine here rebuilds the lists from them, knowing only
those few names, and refuses any other global, any other call, and any opcode outside that shape, so a
crafted file cannot make it run code. The rule is "never unpickle", not "never read a pickle".
"""

from __future__ import annotations

import pickletools
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.errors import DataError

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_NDARRAY, _DTYPE = ("numpy", "ndarray"), ("numpy", "dtype")
_ENCODE = ("_codecs", "encode")  # how Python 3 writes bytes (the b'b' above) at protocols 0-2: encode(str, latin1)
_INTS = frozenset({"BININT1", "BININT2", "BININT", "LONG1", "LONG4", "INT", "LONG"})
_VALUES = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "SHORT_BINSTRING", "BINSTRING", "STRING",
                     "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_PUTS, _GETS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"}), frozenset({"GET", "BINGET", "LONG_BINGET"})
_TUPLE_SIZES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CORRUPT = (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error)


@dataclass
class IntLists:
    """A ragged array of integer sequences: every sequence's values concatenated, and each one's length."""

    values: np.ndarray  # int64, (total,)
    lengths: np.ndarray  # int64, (sequences,)

    def __len__(self) -> int:
        return len(self.lengths)

    def starts(self) -> np.ndarray:
        """Where each sequence begins in `values`."""
        return np.cumsum(self.lengths) - self.lengths


_RAGGED = "ragged/"  # as plain arrays, an IntLists `key` is ragged/<key>/values and ragged/<key>/lengths


def as_plain_arrays(found: dict[str, np.ndarray | IntLists]) -> dict[str, np.ndarray]:
    """read_keras_npz's arrays with each IntLists split into its values and lengths, so np.savez can keep them."""
    plain: dict[str, np.ndarray] = {}
    for key, value in found.items():
        if isinstance(value, IntLists):
            plain[f"{_RAGGED}{key}/values"], plain[f"{_RAGGED}{key}/lengths"] = value.values, value.lengths
        else:
            plain[key] = value
    return plain


def from_plain_arrays(plain: dict[str, np.ndarray]) -> dict[str, np.ndarray | IntLists] | None:
    """What as_plain_arrays was given, or None when the arrays do not fit together (a damaged cache file)."""
    found: dict[str, np.ndarray | IntLists] = {k: v for k, v in plain.items() if not k.startswith(_RAGGED)}
    for key in {k.removeprefix(_RAGGED).rpartition("/")[0] for k in plain if k.startswith(_RAGGED)}:
        values, lengths = plain.get(f"{_RAGGED}{key}/values"), plain.get(f"{_RAGGED}{key}/lengths")
        if values is None or lengths is None or values.dtype != np.int64 or lengths.dtype != np.int64 \
                or values.ndim != 1 or lengths.ndim != 1 or (lengths < 0).any() or lengths.sum() != values.size:
            return None
        found[key] = IntLists(values, lengths)
    return found


class _List:
    """A pickled list: integers (kept 8 bytes each) or lists, never both."""

    __slots__ = ("ints", "lists")

    def __init__(self) -> None:
        self.ints: array = array("q")
        self.lists: list[_List] = []


@dataclass
class _Global:
    module: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return self.module, self.name


@dataclass
class _Dtype:
    descr: str


@dataclass
class _Array:
    shape: tuple[int, ...] | None = None
    items: _List | None = None


def read_keras_npz(path: Path) -> dict[str, np.ndarray | IntLists]:
    """The arrays of a Keras dataset .npz: numeric ones as stored, object arrays of int lists as IntLists."""
    found: dict[str, np.ndarray | IntLists] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                key = member.removesuffix(".npy")
                with archive.open(member) as fp:
                    version = np.lib.format.read_magic(fp)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, _fortran, dtype = read_header(fp)
                    if dtype.hasobject:
                        found[key] = parse_object_array(fp.read(), shape, f"{path}, array {key!r}")
                        continue
                with archive.open(member) as fp:
                    found[key] = np.lib.format.read_array(fp, allow_pickle=False)
    except _CORRUPT as err:
        raise DataError(f"{path} is not a readable .npz archive ({err}); it may be truncated or corrupt: delete it "
                        f"and download it again") from None
    return found


def parse_object_array(payload: bytes, shape: tuple[int, ...], where: str) -> np.ndarray | IntLists:
    """A 1-D object array of int lists (IntLists) or of ints (int64) from its pickle, which is parsed, not run."""
    result = _Machine(where).run(payload)
    if not isinstance(result, _Array) or result.items is None or result.shape is None:
        raise DataError(f"{where}: its pickle does not hold a NumPy array; refused")
    items = result.items
    if result.shape != tuple(shape) or len(result.shape) != 1 or len(items.ints) + len(items.lists) != shape[0]:
        raise DataError(f"{where}: its pickle holds {len(items.ints) + len(items.lists)} elements for shape "
                        f"{list(result.shape)}, header shape {list(shape)}: only 1-D arrays of integer lists are "
                        f"supported")
    if not items.lists:
        return np.array(items.ints, dtype=np.int64)
    if any(inner.lists for inner in items.lists):
        raise DataError(f"{where}: its elements hold nested lists; only lists of integers are supported")
    flat = array("q")
    for inner in items.lists:  # one extend per sequence, not per value
        flat.extend(inner.ints)
    values = np.frombuffer(flat, dtype=np.int64).copy() if len(flat) else np.zeros(0, np.int64)
    lengths = np.fromiter((len(inner.ints) for inner in items.lists), np.int64, count=len(items.lists))
    return IntLists(values, lengths)


class _Machine:
    """The part of the pickle virtual machine that NumPy's object-array pickles use, and nothing more."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    def refuse(self, what: str) -> DataError:
        """The error for anything outside a NumPy array of integer lists."""
        return DataError(f"{self.where}: its pickle {what}, which is not part of a NumPy array of integer lists; "
                         f"refused without running it. The file is not the dataset it claims to be: delete it")

    def run(self, payload: bytes) -> Any:
        """The object the pickle stream describes, built only from the allowed pieces."""
        stack = self.stack
        try:
            for opcode, arg, _ in pickletools.genops(payload):
                name = opcode.name
                if name in _INTS:  # by far the most common: checked first
                    stack.append(arg)
                elif name == "APPENDS":
                    self._extend(self._pop_mark())
                elif name in _PUTS:
                    self.memo[arg] = stack[-1]
                elif name == "MEMOIZE":
                    self.memo[len(self.memo)] = stack[-1]
                elif name in _GETS:
                    stack.append(self.memo[arg])
                elif name == "MARK":
                    self.marks.append(len(stack))
                elif name == "EMPTY_LIST":
                    stack.append(_List())
                else:
                    self._other(name, arg)
            return stack.pop()
        except (ValueError, IndexError, KeyError, OverflowError) as err:
            raise DataError(f"{self.where}: its pickle is malformed ({type(err).__name__}: {err}); refused; delete "
                            f"the file and download it again") from None

    def _other(self, name: str, arg: Any) -> None:
        stack = self.stack
        if name in _VALUES:
            stack.append(arg)
        elif name == "APPEND":
            self._extend([stack.pop()])
        elif name == "LIST":
            items = self._pop_mark()
            stack.append(_List())
            self._extend(items)
        elif name == "TUPLE":
            stack.append(tuple(self._pop_mark()))
        elif name in _TUPLE_SIZES:
            size = _TUPLE_SIZES[name]
            items = tuple(stack[len(stack) - size:])
            if len(items) != size:
                raise IndexError("tuple of more items than the stack holds")
            del stack[len(stack) - size:]
            stack.append(items)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name == "GLOBAL":
            module, _, attribute = str(arg).partition(" ")
            stack.append(self._global(module, attribute))
        elif name == "STACK_GLOBAL":
            attribute, module = stack.pop(), stack.pop()
            if not isinstance(module, str) or not isinstance(attribute, str):
                raise self.refuse("names a global by something other than strings")
            stack.append(self._global(module, attribute))
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            stack.append(self._reduce(func, args))
        elif name == "BUILD":
            state = stack.pop()
            self._build(stack[-1], state)
        elif name not in ("PROTO", "FRAME", "STOP"):
            raise self.refuse(f"uses opcode {name}")

    def _pop_mark(self) -> list[Any]:
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def _extend(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if not isinstance(target, _List):
            raise self.refuse(f"appends to a {type(target).__name__}")
        if all(type(item) is int for item in items):  # bool is an int subclass, and is refused here
            target.ints.extend(items)
        elif all(isinstance(item, _List) for item in items):
            target.lists.extend(items)
        else:
            raise self.refuse(f"puts a {next(type(i).__name__ for i in items if type(i) is not int)} in a list")
        if target.ints and target.lists:
            raise self.refuse("mixes integers and lists in one list")

    def _global(self, module: str, attribute: str) -> _Global:
        found = _Global(module, attribute)
        if found.key not in _RECONSTRUCT and found.key not in (_NDARRAY, _DTYPE, _ENCODE):
            raise self.refuse(f"refers to {module}.{attribute}")
        return found

    def _reduce(self, func: Any, args: Any) -> Any:
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise self.refuse("calls something that is not a known global")
        if func.key in _RECONSTRUCT:
            if len(args) != 3 or not isinstance(args[0], _Global) or args[0].key != _NDARRAY:
                raise self.refuse("reconstructs something other than a plain ndarray")
            return _Array()
        if func.key == _DTYPE:
            if not args or args[0] not in ("O", "O4", "O8"):
                raise self.refuse(f"makes dtype {args[0] if args else None!r} (only object arrays of lists are "
                                  f"read here)")
            return _Dtype(args[0])
        if func.key == _ENCODE and len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return args[0].encode("latin-1")  # computed here: the global itself is never called
        raise self.refuse(f"calls {func.module}.{func.name} with arguments it never needs")

    def _build(self, target: Any, state: Any) -> None:
        if isinstance(target, _Dtype) and isinstance(state, tuple):
            return  # byte order and flags of an object dtype: nothing to keep
        if isinstance(target, _Array) and target.items is None and isinstance(state, tuple) and len(state) == 5:
            _version, shape, dtype, _fortran, items = state
            if not isinstance(dtype, _Dtype) or not isinstance(items, _List) or not isinstance(shape, tuple) \
                    or not all(type(n) is int for n in shape):
                raise self.refuse("builds an array from something other than a shape, dtype('O') and a list")
            target.shape, target.items = shape, items
            return
        raise self.refuse(f"sets the state of a {type(target).__name__}")
