"""Recipe loading: YAML plus `--set key.path=value` overrides onto typed, checked dataclasses.

Every stage describes its settings as a `@dataclass` with CPU-friendly defaults and a recipe maps
onto it one to one. This module is the one place doing that mapping, so every stage reports bad
input alike: a `ConfigError` naming the file (or the `--set`) and the dotted key path, e.g.
`recipes/x.yaml: model.hidden_size: expected int, got str ('abc')`.

Reading: `load_config(cls, path, overrides, section)`. `path=None` gives the defaults; `section`
picks one top-level key, so one recipe file holds every stage (a missing section means defaults).
Floats follow YAML 1.2, so `1e-3` is a float (PyYAML alone reads it as a string).

Types, checked recursively through the annotations: nested dataclasses, `list[X]`,
`tuple[X, ...]`, `dict[str, X]`, `X | None`, `Literal[...]`, int, float, bool, str, Path, Any.
An int is accepted for a float; a bool is never an int. `dict[str, Any]` is passed through
unchecked (kwargs for another library, e.g. TRL's SFTConfig, which validates them itself). A class
with a classmethod `from_config_dict(d, where)` (the transformers-based ModelConfig) validates its
own mapping and puts `where` in its errors. Unknown keys are errors with a "did you mean".

Writing: `config_to_dict(obj)`; `save_config(obj, path)` writes atomically (temp file, rename) the
resolved config that is kept next to every output and loads back into the same dataclass.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """Bad recipe input: the message names the file or override and the key path."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats: PyYAML alone reads `lr: 1e-5` as the string '1e-5'."""


_EXP_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789"))


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from e


def read_mapping(path: Path, section: str | None = None) -> dict:
    """The file's mapping (or its `section`), with errors that name the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    if section is not None:
        data = data.get(section) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: {section}: expected a mapping, got {type(data).__name__}")
    return data


class _Origins:
    """Names where a key path's value came from: the file (and section), or the `--set` text.

    `set_prefix` is what the user typed before the key in `--set` (`distillery run` takes
    `--set pretrain.teacher.train.max_steps=5` and hands the stage `train.max_steps=5`), so the
    message quotes the `--set` as written.
    """

    def __init__(self, source: str, section: str | None, set_prefix: str = ""):
        self.source, self.section, self.set_prefix = source, section, set_prefix
        self.overrides: dict[str, str] = {}

    def at(self, keypath: str) -> str:
        """`file: section.key.path`, or `--set key.path=v: key.path` for an overridden value."""
        for key, text in self.overrides.items():
            if keypath == key or keypath.startswith((key + ".", key + "[")):
                return f"--set {self.set_prefix}{text}: {keypath}"
        shown = ".".join(p for p in (self.section, keypath) if p)
        return f"{self.source}: {shown}" if shown else self.source

    def blamed(self, keypath: str, message: str) -> list[str]:
        """The `--set` texts that changed a value below `keypath` whose key (relative to it) the
        error message of that mapping's own check names."""
        found = []
        for key, text in self.overrides.items():
            if keypath and not key.startswith(keypath + "."):
                continue
            relative = key[len(keypath) + 1:] if keypath else key
            if _names_key(message, relative):
                found.append(f"--set {self.set_prefix}{text}")
        return found


def _names_key(message: str, key: str) -> bool:
    """Whether an error message mentions the dotted key as a whole word (`seq_len`, not `len`)."""
    return re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message) is not None


def _apply_override(data: dict, text: str, cls: type, origins: _Origins) -> None:
    """Set `a.b.c=value` in `data`, after checking the key path against the dataclass fields."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    shown = f"--set {origins.set_prefix}{text}"
    if not sep or not key:
        raise ConfigError(f"{shown}: expected key.path=value")
    parts = key.split(".")
    tp: Any = cls
    for i, part in enumerate(parts):
        tp = _unwrap_optional(tp)
        if tp is Any or tp is dict or typing.get_origin(tp) is dict or hasattr(tp, "from_config_dict"):
            break  # a free-form dict or a self-validating class: the rest is checked when built
        if not dataclasses.is_dataclass(tp):
            parent = ".".join(parts[:i])
            raise ConfigError(f"{shown}: '{parent}' is a {_type_name(tp)}, it has no keys")
        names = _field_names(tp)
        if part not in names:
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{shown}: unknown key '{where}'{_suggest(part, names)}")
        tp = typing.get_type_hints(tp)[part]
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = _parse_yaml(raw, shown)
    origins.overrides[key] = text


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _suggest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unwrap_optional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else []
    return args[0] if len(args) == 1 else tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _build_dataclass(cls: type, data: Any, keypath: str, origins: _Origins) -> Any:
    """Make `cls` from a mapping: unknown keys are errors, missing keys take the defaults."""
    where = origins.at(keypath)
    if not isinstance(data, dict):
        got = f"{type(data).__name__} ({data!r})"
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {got}")
    names, hints = _field_names(cls), typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(str(key), names)}")
        kwargs[key] = _coerce(hints[key], value, f"{keypath}.{key}".lstrip("."), origins)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # a missing required field or a __post_init__ check
        sets = origins.blamed(keypath, str(e))  # the check names a key a --set changed
        if sets:
            where = f"{', '.join(sets)}: {keypath or cls.__name__}"
        raise ConfigError(f"{where}: {e}") from e


def _coerce(tp: Any, value: Any, keypath: str, origins: _Origins) -> Any:
    """Check `value` against the annotation `tp` and convert it (int -> float, str -> Path, ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def fail(expected: str) -> ConfigError:
        got = f"{type(value).__name__} ({value!r})"
        return ConfigError(f"{origins.at(keypath)}: expected {expected}, got {got}")

    if tp is Any:
        return value
    if _is_union(tp):
        return _coerce_union(tp, value, keypath, origins, fail)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise fail(f"one of {list(args)}")
    if hasattr(tp, "from_config_dict"):  # before is_dataclass: such classes validate themselves
        return _from_config_dict(tp, value, keypath, origins, fail)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, keypath, origins)
    if origin in (list, tuple) or tp in (list, tuple):
        return _coerce_sequence(tp, value, keypath, origins, fail)
    if origin is dict or tp is dict:
        return _coerce_dict(tp, value, keypath, origins, fail)
    return _coerce_scalar(tp, value, fail)


def _coerce_union(tp, value, keypath, origins, fail):
    options = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None and len(options) < len(typing.get_args(tp)):
        return None
    if len(options) == 1:
        return _coerce(options[0], value, keypath, origins)  # its message is the precise one
    for option in options:
        try:
            return _coerce(option, value, keypath, origins)
        except ConfigError:
            pass
    raise fail(_type_name(tp))


def _from_config_dict(tp, value, keypath, origins, fail):
    if isinstance(value, tp):
        return value
    if not isinstance(value, dict):
        raise fail(f"a mapping for {tp.__name__}")
    where = origins.at(keypath)
    try:
        return tp.from_config_dict(dict(value), where)
    except (TypeError, ValueError) as e:  # its own ConfigError, or a plain error to locate
        raise ConfigError(str(e) if where in str(e) else f"{where}: {e}") from e


def _coerce_sequence(tp, value, keypath, origins, fail):
    origin = typing.get_origin(tp) or tp
    if not isinstance(value, (list, tuple)):
        raise fail(_type_name(tp))
    args = typing.get_args(tp)
    if origin is tuple and args and args[1:] != (Ellipsis,):  # fixed length: tuple[float, float]
        if len(value) != len(args):
            raise fail(f"{len(args)} items ({_type_name(tp)})")
        return tuple(_coerce(t, v, f"{keypath}[{i}]", origins) for i, (t, v) in enumerate(zip(args, value)))
    item_type = args[0] if args else Any
    items = [_coerce(item_type, v, f"{keypath}[{i}]", origins) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_dict(tp, value, keypath, origins, fail):
    if not isinstance(value, dict):
        raise fail(_type_name(tp))
    args = typing.get_args(tp)
    if not args or args[1] is Any:
        return dict(value)  # free-form pass-through; the receiving library validates it
    key_type, value_type = args
    out = {}
    for k, v in value.items():
        sub = f"{keypath}.{k}"
        out[_coerce(key_type, k, sub, origins)] = _coerce(value_type, v, sub, origins)
    return out


def _coerce_scalar(tp, value, fail):
    if not isinstance(tp, type):
        raise TypeError(f"recipes.config cannot check fields annotated {tp!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise fail(tp.__name__)  # YAML `true` is no number, though Python's bool is an int
    if tp is float and isinstance(value, int):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if isinstance(value, tp):
        return value
    raise fail(_type_name(tp))


def load_config(
    cls: type[T], path: str | Path | None, overrides: Sequence[str] = (), section: str | None = None
) -> T:
    """Read `path` (or only defaults when None), apply `--set` overrides, build a checked `cls`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    data = read_mapping(Path(path), section) if path is not None else {}
    return config_from_mapping(cls, data, path, overrides, section)


def config_from_mapping(cls: type[T], data: dict, path: str | Path | None,
                        overrides: Sequence[str] = (), section: str | None = None,
                        set_prefix: str = "") -> T:
    """`load_config` on a mapping already read from `path` (the recipe runner fills in the wiring
    between stages first); errors name `path` and `section` as if read from the file.
    `set_prefix` is the part of each `--set` the caller stripped (see `_Origins`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {section}: expected a mapping, got {type(data).__name__}")
    source = str(path) if path is not None else "<defaults>"
    origins = _Origins(source, section if path is not None else None, set_prefix)
    data = copy.deepcopy(data)  # overrides must not write into the caller's mapping
    for text in overrides:
        _apply_override(data, text, cls, origins)
    return _build_dataclass(cls, data, "", origins)


def blame_override(message: str, path: str | Path | None, overrides: Sequence[str],
                   set_prefix: str = "") -> str:
    """Point a cross-field check's message (`f"{path}: train.seq_len=... exceeds ..."`, written by
    a config's own `validate(where)`) at the `--set` when an overridden key is named in it."""
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key and _names_key(message, key):
            shown = f"--set {set_prefix}{text}"
            prefix = f"{path}: "
            return shown + ": " + message[len(prefix):] if message.startswith(prefix) else \
                f"{shown}: {message}"
    return message


def config_to_dict(obj: Any) -> Any:
    """Plain YAML-ready data: dataclasses by field, `to_dict()` objects via it, Paths as str."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return config_to_dict(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML atomically, so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(obj), sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a saved config is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
