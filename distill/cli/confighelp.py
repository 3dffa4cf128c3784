"""The `--help` text that lists a command's recipe keys with their defaults.

    recipe keys (section `pretrain:` of --config; --set takes them without the section):
      out_dir                 runs/pretrain
      train.max_steps         200
      model.*                 ModelConfig keys (transformers' DeepseekV3Config names)

Rendered when help is printed, not when the parser is built, so `distillery --help` does not
import torch to learn the defaults of every command.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import typing
from typing import Any


def import_object(path: str) -> Any:
    """`"package.module:Name"` -> the object."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "(required)"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        value = list(value)
    return str(value)


def _item_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (list, tuple) and args else None


def config_key_lines(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, default) for every field of the dataclass `cls`, nested ones expanded."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key, tp = prefix + f.name, hints[f.name]
        if hasattr(tp, "from_config_dict"):  # ModelConfig: a transformers config, its own keys
            rows.append((key + ".*", f"{tp.__name__} keys (transformers' DeepseekV3Config names)"))
        elif dataclasses.is_dataclass(tp):
            rows += config_key_lines(tp, key + ".")
        elif dataclasses.is_dataclass(_item_type(tp)):
            item = _item_type(tp)
            fields = ", ".join(n.name if _default(n) == "(required)" else f"{n.name}={_show(_default(n))}"
                               for n in dataclasses.fields(item) if n.init)
            rows.append((key, f"list of {item.__name__}: {fields}"))
        else:
            rows.append((key, _show(_default(f))))
    return rows


def config_help(cls: type, section: str | None) -> str:
    where = f"section `{section}:` of --config" if section else "--config"
    rows = config_key_lines(cls)
    width = min(max(len(k) for k, _ in rows), 34)
    lines = [f"recipe keys and defaults ({where}; --set takes them without the section):"]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines) + "\n"


def add_config_help(parser: argparse.ArgumentParser, config: str, section: str | None) -> None:
    """Append `config_help` of the dataclass at import path `config` to the parser's help."""
    plain = parser.format_help

    def format_help() -> str:
        try:
            text = config_help(import_object(config), section)
        except ImportError as e:  # an optional dependency is missing: the help still prints
            text = f"(recipe keys unavailable: {e})\n"
        return plain() + "\n" + text

    parser.format_help = format_help  # an instance attribute wins over the method
    parser.recipe_config = (config, section)
