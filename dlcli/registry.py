"""Registries of the names a spec can use: one per kind (layers, activations, losses, ...).

A registered name never changes. Besides it, an entry may have synonyms (`aliases`): other spellings users
write, such as Keras' short names `mse`, `mae` and `acc`, accepted silently; and retired names (`retired`):
names the entry had before a rename, still accepted, with a RetiredNameWarning once per name and process.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic_core import CoreSchema, core_schema

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
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """pydantic reads true as 1; in a spec `units = true` is a mistake, not a number, so it must fail as one."""
        if not isinstance(data, dict):
            return data
        fixed = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if isinstance(value, bool) and field is not None:
                found = _types_in(field.annotation)
                if bool not in found and found & {int, float}:
                    fixed[name] = TomlBoolean(value)
        return fixed


class TomlBoolean:
    """A true/false found where a number belongs: no number type accepts it, and it prints as TOML does."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __str__(self) -> str:
        return "true" if self.value else "false"

    __repr__ = __str__


def _types_in(annotation: Any) -> set[Any]:
    """Every type named anywhere inside an annotation (unions, Annotated, containers)."""
    found = {annotation} if isinstance(annotation, type) else set()
    for arg in get_args(annotation):
        found |= _types_in(arg)
    return found


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
