"""TOML file -> RunSpec: overrides from --set, validation, and errors that name the file and the key."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, BeforeValidator, ValidationError

from dlcli import registry
from dlcli.errors import RunDirectoryTakenError, SpecError
from dlcli.spec.key_paths import TooDeepError, display_key, parse_key, parse_toml, parse_value, tomllib
from dlcli.spec.models import RunSpec

__all__ = ["apply_overrides", "describe_error", "key_is_known", "load_spec", "naming_the_file", "parse_key",
           "parse_value", "read_toml", "set_value", "validate_spec"]


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at `path`; unreadable or malformed files are SpecErrors naming file, line and column."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a spec file") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); is this a TOML spec?") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        return parse_toml(text.removeprefix("\ufeff"))  # a byte-order mark, as Windows editors write
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: invalid TOML: {err}{_quoted_line(text, str(err))}") from None
    except TooDeepError as err:
        raise SpecError(f"{path}: invalid TOML: {err}") from None


def _quoted_line(text: str, message: str) -> str:
    """The line a TOML error points at, quoted: tomllib names only its number, and its "Cannot overwrite a value"
    (a key given twice) says nothing of which key."""
    found = re.search(r"at line (\d+)", message)
    lines = text.removeprefix("\ufeff").splitlines()
    if found is None or not 1 <= int(found.group(1)) <= len(lines) or not lines[int(found.group(1)) - 1].strip():
        return ""
    line = lines[int(found.group(1)) - 1].strip()
    return f": {line if len(line) <= 80 else line[:77] + '...'}"


def apply_overrides(document: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each KEY=VALUE of `overrides` in `document` (in place), creating tables as needed (see set_value)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item}: expected KEY=VALUE, e.g. --set train.epochs=3")
        try:
            parsed = parse_value(value.strip())
        except TooDeepError as err:
            raise SpecError(f"--set {key}: {err}") from None
        set_value(document, key.strip(), _from_here(parse_key(key.strip()), parsed))
    return document


# the [data] keys that name files or folders: relative to the spec file when written in it (_resolve_paths)
DATA_PATH_KEYS = ("train", "test", "validation", "labels")


def _from_here(parts: list[str | int], value: Any) -> Any:
    """A data path typed on the command line is relative to the current directory, as in any command-line tool
    (one written in the spec file is relative to the file): made absolute here, so _resolve_paths keeps it."""
    def absolute(key: Any, path: Any) -> Any:
        if key in DATA_PATH_KEYS and isinstance(path, str) and path not in ("", "inferred") \
                and not os.path.isabs(path):
            return os.path.abspath(path)
        return path

    if parts[:1] == ["data"] and len(parts) == 2:
        return absolute(parts[1], value)
    if parts == ["data"] and isinstance(value, dict):
        return {key: absolute(key, item) for key, item in value.items()}
    return value


def set_value(document: dict[str, Any], key: str, value: Any, option: str = "--set",
              where: str | None = None) -> dict[str, Any]:
    """Set the key path `key` (model.layers[2].units) of `document` to `value`, in place, creating tables.

    A name given for a table (`optimizer = "adam"`, `loss = "mse"`, a metric or a callback by name) is
    short for `{ type = "NAME" }`, so `train.optimizer.learning_rate` expands it before descending, wherever
    the schema says that key takes the shorthand. `option` names the flag in errors (--set, --param); `where`,
    when the key comes from elsewhere, is what errors name instead of "OPTION KEY" (a spec's [tune.params] key).
    """
    parts = parse_key(key, option)
    where = where or f"{option} {key}"
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        nxt = parts[depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise SpecError(f"{where}: {display_key(parts[:depth + 1])} does not exist")
        elif not isinstance(node, dict):
            raise SpecError(f"{where}: {display_key(parts[:depth])} is not a table")
        elif part not in node:  # a table the file leaves out: start from the schema's default, if it has one
            node[part] = _default_table(parts[:depth + 1], document) if isinstance(nxt, str) else []
        if isinstance(node[part], str) and isinstance(nxt, str) and _takes_name_shorthand(parts[:depth + 1],
                                                                                         document):
            node[part] = {"type": node[part]}
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise SpecError(f"{where}: {display_key(parts)} does not exist")
    elif not isinstance(node, dict):
        raise SpecError(f"{where}: {display_key(parts[:-1])} is not a table")
    node[last] = value
    return document


def key_is_known(document: dict[str, Any], key: str, option: str = "--set") -> bool:
    """Whether the schema has the key path `key` (following the document's `type` tags to the right model)."""
    return _schema_at(parse_key(key, option), document) is not None


def key_takes_only_integers(document: dict[str, Any], key: str, option: str = "--set") -> bool:
    """Whether the key path `key` is one whose value must be an integer (so 3.5 can never be right there)."""
    annotation = _schema_at(parse_key(key, option), document)
    return annotation is not None and registry.takes_only_integers(annotation)


def _default_table(parts: list[str | int], document: dict[str, Any]) -> dict[str, Any]:
    """The default of the key at `parts` when it is a table (train.optimizer: { type = "rmsprop" }), else {}."""
    owner = _unwrap(_schema_at(parts[:-1], document))
    field = owner.model_fields.get(parts[-1]) if isinstance(owner, type) and issubclass(owner, BaseModel) else None
    default = field.get_default(call_default_factory=True) if field is not None else None
    return copy.deepcopy(default) if isinstance(default, dict) else {}


def _takes_name_shorthand(parts: list[str | int], document: dict[str, Any]) -> bool:
    """Whether the key at `parts` accepts a bare name for `{ type = NAME }`.

    That is a key whose schema converts a string before validating (a BeforeValidator) into a model, or a
    union of models, told apart by `type`: optimizer, loss, metrics entries, callbacks entries.
    """
    annotation = _schema_at(parts, document)
    if annotation is None:
        return False
    annotation = _without_none(annotation)
    if typing.get_origin(annotation) is not typing.Annotated:
        return False
    base, *metadata = typing.get_args(annotation)
    if not any(isinstance(item, BeforeValidator) for item in metadata):
        return False
    base = _unwrap(base)
    members = [_unwrap(member) for member in typing.get_args(base)] or [base]
    return all(isinstance(member, type) and issubclass(member, BaseModel) and "type" in member.model_fields
               for member in members)


def _schema_at(parts: list[str | int], document: dict[str, Any]) -> Any:
    """The annotation (Annotated metadata kept) of the key at `parts`, following the document's own tags."""
    current: Any = RunSpec
    node: Any = document
    for part in parts:
        tag = node.get("type") if isinstance(node, dict) else None
        if isinstance(tag, str) and typing.get_origin(_unwrap(current)) in _UNIONS:
            current = _step(current, tag)  # a union of models: the node's type names its member
        current = _step(current, part) if current is not None else None
        if current is None:
            return None
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    return current


def _has(node: dict[str, Any] | list[Any], part: str | int) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


def _without_none(annotation: Any) -> Any:
    """`X | None` -> X, keeping X's Annotated metadata (which _unwrap drops)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) in _UNIONS and len(args) == 1 else annotation


def load_spec(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> RunSpec:
    """Read, override, validate: the RunSpec of a spec file, with data paths made relative to the file."""
    document = apply_overrides(read_toml(path), list(overrides))
    return validate_spec(document, path)


@contextlib.contextmanager
def naming_the_file(path: Path) -> Iterator[None]:
    """SpecErrors raised inside (a graph's cycle, a shape, a metric found when the model is built) name the spec
    file first, as the key errors of load_spec do: "g.toml: model.nodes: cycle a -> b -> a"."""
    try:
        yield
    except RunDirectoryTakenError:
        raise  # about the run directory, not the spec
    except SpecError as err:
        if str(err).startswith((f"{path.name}: ", f"{path.name} has ")):
            raise
        raise SpecError(f"{path.name}: {err}") from None


def validate_spec(document: dict[str, Any], path: Path) -> RunSpec:
    """Validate a TOML document; every problem pydantic finds is reported at once, each naming its key."""
    try:
        spec = RunSpec.model_validate(document)
    except ValidationError as err:
        problems = _unique([describe_error(e, document) for e in err.errors()])
        if len(problems) == 1:
            raise SpecError(f"{path.name}: {problems[0]}") from None
        listed = "\n".join(f"  {p}" for p in problems)
        raise SpecError(f"{path.name} has {len(problems)} problems:\n{listed}") from None
    return _resolve_paths(spec, path.parent)


def _resolve_paths(spec: RunSpec, folder: Path) -> RunSpec:
    # abspath, not resolve(): resolving touches the file system, and a symlink loop would raise here; the data
    # readers' one gate reports every unreadable path with its exit code
    updates = {key: Path(os.path.abspath(folder / value)) for key in DATA_PATH_KEYS
               if isinstance(value := getattr(spec.data, key), Path) and not value.is_absolute()}
    return spec.model_copy(update={"data": spec.data.model_copy(update=updates)}) if updates else spec


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _user_path(loc: tuple[Any, ...], document: Any, names_key: bool) -> tuple[list[str | int], list[Any]]:
    """The key path as the user wrote it: pydantic's union tags, which are not keys of the input, are dropped.

    `names_key`: the last part names a key the user did not write (a missing or an unknown key), so it is
    kept even though the input lacks it. Also returns the tags met on the way.
    """
    shown: list[str | int] = []
    tags: list[Any] = []
    node = document
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            shown.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            shown.append(part)
        elif isinstance(node, (dict, list)) or node is None:
            tags.append(part)
            if names_key and isinstance(node, dict) and not isinstance(part, int) and part == loc[-1]:
                shown.append(part)
        else:
            tags.append(part)
    return shown, tags


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model whose field the last part of `loc` names, following pydantic's union tags."""
    current: Any = RunSpec
    for part in loc[:-1]:
        current = _step(current, part)
        if current is None:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


_UNIONS = (typing.Union, types.UnionType)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in _UNIONS and len(args) == 1:
        return _unwrap(args[0])
    return annotation


def _step(current: Any, part: Any) -> Any:
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        # pydantic moves a field's own Annotated metadata (validators) to field.metadata: put it back
        return typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    origin = typing.get_origin(current)
    if origin in (list, tuple):
        return typing.get_args(current)[0]
    if origin is dict:
        return typing.get_args(current)[1]
    for member in typing.get_args(current):  # a union: the tag names the member
        member = _unwrap(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            tag_field = member.model_fields.get("type") or member.model_fields.get("schedule")
            if tag_field is not None and (tag_field.default == part or part in typing.get_args(tag_field.annotation)):
                return member  # the tag may be an alias the member's Literal lists (a loss's "mse")
    return None


def _tag_kind(loc: tuple[Any, ...]) -> str:
    names = [p for p in loc if isinstance(p, str)]
    if "optimizer" in names:
        return "schedule" if "learning_rate" in names else "optimizer"
    if "callbacks" in names:
        return "callback"
    if "loss" in names:
        return "loss"
    return "layer"


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a table" if value else "an empty table"
    if isinstance(value, list):
        return "a list"
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def describe_error(error: dict[str, Any], document: dict[str, Any]) -> str:
    """One line for one pydantic error: the dotted key, what was expected, what was found, and a fix."""
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    shown, _ = _user_path(loc, document, names_key=kind in ("missing", "extra_forbidden"))
    where = display_key(shown)
    value = error.get("input")
    message = _MESSAGES.get(kind)
    if kind == "extra_forbidden":
        model = _model_at(loc)
        allowed = sorted(model.model_fields) if model is not None else []
        owner = getattr(model, "model_fields", {}).get("type")
        what = f"{owner.default} takes" if owner is not None and isinstance(owner.default, str) else "allowed keys:"
        close = registry.suggest(str(loc[-1]), allowed)
        hint = f" (did you mean {close}?)" if close else ""
        text = f"unknown key; {what} {', '.join(allowed)}{hint}" if allowed else "unknown key"
    elif kind == "union_tag_invalid":
        what = _tag_kind(loc)
        reg = {"layer": registry.layers, "optimizer": registry.optimizers, "callback": registry.callbacks,
               "schedule": registry.schedules, "loss": registry.losses}[what]
        tag = ctx.get("tag", "")
        close = reg.closest(str(tag))
        hint = f" (did you mean {close}?)" if close else ""
        key = "schedule" if what == "schedule" else "type"
        where = display_key([*shown, key])
        text = f"unknown {what} {tag!r}{hint}; known {what}s: {', '.join(reg.names())}"
    elif kind == "union_tag_not_found":
        what = _tag_kind(loc)
        key = "schedule" if what == "schedule" else "type"
        example = {"layer": 'type = "dense"', "optimizer": 'type = "adam"', "callback": 'type = "early_stopping"',
                   "schedule": 'schedule = "exponential_decay"', "loss": 'type = "ctc"'}[what]
        text = f"missing {key}: say which {what} this is, e.g. {example}"
    elif kind == "missing":
        text = "required key missing"
    elif kind == "too_short":
        text = "must not be empty"
    elif kind == "greater_than" and ctx.get("gt") == 0 and isinstance(value, int) and not isinstance(value, bool):
        text = f"must be a positive integer, got {value}"
    elif kind in _BOUNDS:
        text = f"must be {_BOUNDS[kind]} {ctx.get(_BOUND_KEYS[kind])}, got {_got(value)}"
    elif kind == "value_error":
        text = str(ctx.get("error", error["msg"])).removeprefix("Value error, ")
    elif kind == "literal_error":
        text = f"must be one of {ctx.get('expected')}, got {_got(value)}"
    elif kind == "string_pattern_mismatch" and loc == ("name",):
        # ASCII only: the name becomes a folder name, which must work in any locale and on any file system
        text = (f"must be ASCII letters (A-Z, a-z), digits, '.', '_' or '-', beginning with a letter or digit (it "
                f"names the run folder), got {_got(value)}")
    elif message is not None:
        text = f"{message}, got {_got(value)}"
    else:
        text = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {_got(value)}"
    return f"{where}: {text}" if shown or kind in ("missing", "extra_forbidden") else text


_BOUNDS = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than",
           "less_than_equal": "at most"}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
_MESSAGES = {
    "int_parsing": "must be an integer", "int_type": "must be an integer", "int_from_float": "must be an integer",
    "float_parsing": "must be a number", "float_type": "must be a number", "bool_parsing": "must be true or false",
    "bool_type": "must be true or false", "string_type": "must be a string", "list_type": "must be a list",
    "tuple_type": "must be a list", "dict_type": "must be a table", "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "finite_number": "must be a finite number",
}
