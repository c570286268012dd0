"""Registries of the names a spec can use: one per kind (layers, activations, losses, ...).

A registered name never changes. Besides it, an entry may have synonyms (`aliases`): other spellings users
write, such as Keras' short names `mse`, `mae` and `acc`, accepted silently; and retired names (`retired`):
names the entry had before a rename, still accepted, with a RetiredNameWarning once per name and process. A
component's key renamed (to Keras' name) is retired the same way: see renamed_key.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Callable, Iterable, Iterator, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (BaseModel, BeforeValidator, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler,
                      model_validator)
from pydantic_core import CoreSchema, PydanticUndefined, core_schema

from dlcli.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, the object, its spec model (if any) and its one-line doc."""

    name: str
    target: Any
    spec: Any
    doc: str
    alias_of: str | None = None  # the registered name, for a synonym or a retired name
    retired: bool = False  # a name the entry had before a rename: accepted, with a warning


class RetiredNameWarning(FutureWarning):
    """A spec names a component by a retired name: it still works, under the name that replaced it."""


class Registry:
    """Names of one kind of component, each with a one-line doc; unknown names get a 'did you mean'."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._warned: set[str] = set()  # retired names already warned about: once per process is enough

    def register(self, name: str, spec: Any = None, aliases: tuple[str, ...] = (),
                 retired: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under `name`, its synonyms `aliases` (accepted
        silently) and its `retired` names (accepted with a RetiredNameWarning)."""

        def decorate(target: T) -> T:
            doc = (getattr(target, "__doc__", None) or "").strip().splitlines()
            if not doc or not doc[0].strip():
                raise TypeError(f"{self.kind} {name!r} needs a docstring: its first line is the one-line doc")
            for key in (name, *aliases, *retired):
                if key in self._entries:
                    raise TypeError(f"{self.kind} {key!r} is registered twice")
                self._entries[key] = Entry(key, target, spec, doc[0].strip(), None if key == name else name,
                                           key in retired)
            return target

        return decorate

    def entry(self, name: str) -> Entry:
        """The entry for `name`; an unknown name raises UnknownNameError with the closest match, and a retired
        name warns (once) that it has been replaced."""
        try:
            found = self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names(), self.closest(name)) from None
        if found.retired and name not in self._warned:
            self._warned.add(name)
            warnings.warn(RetiredNameWarning(f"{self.kind} {name!r} is a retired name; write {found.alias_of!r}, "
                                             "which means the same (the old name keeps working)"), stacklevel=2)
        return found

    def get(self, name: str) -> Any:
        """The registered object for `name`."""
        return self.entry(name).target

    def closest(self, name: str) -> str | None:
        """The registered name nearest to `name`, if any is near enough."""
        return suggest(name, self._entries)

    def spellings(self, name: str) -> tuple[str, ...]:
        """The registered `name`, then every synonym and retired name that means it (none of them warns)."""
        return (name, *(key for key, entry in self._entries.items() if entry.alias_of == name))

    def names(self, include_aliases: bool = False) -> list[str]:
        """Registered names, sorted; aliases only when asked."""
        return sorted(k for k, e in self._entries.items() if include_aliases or e.alias_of is None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(e for e in self._entries.values() if e.alias_of is None)


_warned_keys: set[tuple[str, str]] = set()  # (component, retired key) already warned about in this process


def renamed_key(data: Any, component: str, old: str, new: str) -> Any:
    """A spec table (a pydantic model's input) with its retired key `old` given under the key `new` that replaced
    it, and a RetiredNameWarning once per process; giving both is a ValueError (a spec error)."""
    if not isinstance(data, dict) or old not in data:
        return data
    if new in data:
        raise ValueError(f"give {new} only ({old} is its retired name)")
    if (component, old) not in _warned_keys:
        _warned_keys.add((component, old))
        warnings.warn(RetiredNameWarning(f"{component}'s key {old!r} is a retired name; write {new!r}, which means "
                                         "the same (the old name keeps working)"), stacklevel=2)
    return {new if key == old else key: value for key, value in data.items()}


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The one "did you mean" of dlcli: the candidate nearest to `name`, if any is near enough (difflib)."""
    found = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


class StrictSpec(BaseModel):
    """Base of every spec model: unknown keys are errors, so a misspelt key fails instead of vanishing.

    Numbers must be finite: `learning_rate = nan` or `inf` is a mistake to report before training, not a
    divergence to find after it, and no key means "no limit" by inf (a missing value, None, does that).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_conversions(cls, data: Any) -> Any:
        """pydantic's lax mode converts: true to 1, "8" to 8, "0.003" to 0.003, "no" to false, 1 to true. TOML has
        numbers and booleans of its own, so in a spec each of these is a mistake (`units = "8"`, `shuffle = "no"`),
        and must fail as one: see _unconverted()."""
        if not isinstance(data, dict):
            return data
        fixed = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is not None:
                annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
                fixed[name] = _unconverted(annotation, value)
        return fixed


class TomlValue:
    """A value found where only a conversion would make it fit (a string or true/false for a number, a string or a
    number for a boolean): no type accepts it, and it prints as TOML writes it."""

    def __init__(self, value: bool | int | float | str) -> None:
        self.value = value

    def __str__(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return repr(self.value) if isinstance(self.value, str) else str(self.value)

    __repr__ = __str__


def _unconverted(annotation: Any, value: Any) -> Any:
    """`value`, with every true/false, number or string in it that `annotation` takes only by converting it (see
    StrictSpec) wrapped in a TomlValue. An integer for a float, a list for a tuple and a word among a key's
    Literal values are what TOML writes, and stay. Nested spec models check their own keys."""
    annotation = _as_written(annotation)
    if isinstance(value, (list, dict)):
        inner = _inner_annotation(annotation, list if isinstance(value, list) else dict)
        if inner is None:
            return value
        return [_unconverted(inner, v) for v in value] if isinstance(value, list) else \
            {key: _unconverted(inner, v) for key, v in value.items()}
    if not isinstance(value, (bool, int, float, str)):
        return value
    types, words = _scalars_in(annotation)
    if types & {Any, object}:  # anything goes (dataset options): whoever reads the value checks it
        return value
    if isinstance(value, bool):
        fits = bool in types or not types & {int, float}
    elif isinstance(value, str):
        fits = str in types or value in words or not types & {int, float, bool}
    else:
        fits = bool(types & {int, float}) or bool not in types or value in words
    return value if fits else TomlValue(value)


def _as_written(annotation: Any) -> Any:
    """The annotation of what a spec may write for a key: a BeforeValidator's json_schema_input_type where one
    reshapes the value first (3 for a (3, 3) kernel_size), else the annotation itself."""
    if get_origin(annotation) is Annotated:
        for item in get_args(annotation)[1:]:
            written = getattr(item, "json_schema_input_type", PydanticUndefined)
            if isinstance(item, BeforeValidator) and written is not PydanticUndefined:
                return _as_written(written)
    return annotation


def _members(annotation: Any) -> list[Any]:
    """The alternatives of an annotation: Annotated and Optional unwrapped, unions spread out."""
    annotation = _as_written(annotation)
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _inner_annotation(annotation: Any, container: type) -> Any:
    """What the entries of a list (or the values of a table) may be, by the annotation's list, tuple or dict
    alternatives; None when it has none (a nested spec model: it checks its own keys)."""
    inner = []
    for member in _members(annotation):
        origin, args = get_origin(member), [a for a in get_args(member) if a is not Ellipsis]
        if container is list and origin in (list, tuple, set, frozenset):
            inner += args
        elif container is dict and origin is dict and len(args) == 2:
            inner.append(args[1])
    return Union[tuple(inner)] if inner else None  # noqa: UP007 - built at run time


def _scalars_in(annotation: Any) -> tuple[set[type], set[Any]]:
    """The scalar types an annotation takes as they are (containers' contents left out), and its Literal values."""
    types: set[type] = set()
    words: set[Any] = set()
    for member in _members(annotation):
        if get_origin(member) is Literal:
            words |= set(get_args(member))
        elif isinstance(member, type) and get_origin(member) is None:
            types.add(member)
    return types, words


def takes_only_integers(annotation: Any) -> bool:
    """Whether a key of this annotation takes integers and never a number with a fraction: units, batch_size, a
    kernel_size written 3 or [3, 3]. A key that also takes a float, or anything, is not one."""
    types, words = _scalars_in(annotation)
    fractions = any(isinstance(word, float) for word in words)
    return int in types and not types & {float, Any, object} and not fractions


@dataclass(frozen=True)
class KnownName:
    """Annotated metadata for a string that must be a name registered in `registry` (see known_name).

    One object says it to every reader of the models: pydantic validates with it (a 'did you mean' for an
    unknown name), the JSON Schema export lists the names for editors' completion, and the spec reference
    and `dlcli list` print "<kind> name".
    """

    registry: Registry

    def check(self, name: str) -> str:
        """`name` itself, or a ValueError with the registry's did-you-mean message."""
        if name not in self.registry:
            raise ValueError(str(UnknownNameError(self.registry.kind, name, self.registry.names(),
                                                  self.registry.closest(name))))
        self.registry.entry(name)  # where the spec is read, a retired name warns
        return name

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        # read when the schema is generated, after every component has registered
        return {**handler(schema), "enum": self.registry.names(include_aliases=True)}


def known_name(registry: Registry) -> KnownName:
    """Annotated metadata that accepts only names registered in `registry`, with a 'did you mean'."""
    return KnownName(registry)


layers = Registry("layer")
activations = Registry("activation")
initializers = Registry("initializer")
losses = Registry("loss")
optimizers = Registry("optimizer")
schedules = Registry("schedule")
metrics = Registry("metric")
datasets = Registry("dataset")
callbacks = Registry("callback")
loggers = Registry("logger")  # experiment trackers, callbacks too (train/callbacks/), named in [train] loggers
readers = Registry("reader")  # data files by what they accept (dlcli/data/readers/); spec: the reader's options
exporters = Registry("exporter")  # file formats a trained model is written in (dlcli/export/), by `--format`
