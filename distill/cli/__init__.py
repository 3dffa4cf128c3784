"""The `distillery` command: one top-level parser, command groups registered by their own modules.

Each area of the suite (model, tokenizer, pretrain, generate, filter, sft, grpo, eval, run) keeps its
commands in its own thin `distill/cli/<command>.py` (arguments and config only; the work lives in
the stage modules) with a `register(subparsers)` function that adds parsers and
sets `func=handler(args) -> int | None` on each. Modules are imported one by one when the parser is
built, so an area whose import fails (a missing optional dependency) is reported in `--help` and
leaves the other commands working.

Errors: a handler raising ValueError (ConfigError included) or FileNotFoundError is bad user input,
printed as `distillery: error: <message>` with exit code 2 and no traceback. Anything else is a bug
and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata

COMMAND_MODULES = [
    "distill.cli.model",
    "distill.cli.pretrain",
    "distill.cli.tokenizer",
    "distill.cli.verify",
    "distill.cli.eval",
    "distill.cli.data",
    "distill.cli.generate",
    "distill.cli.serve",
    "distill.cli.filter",
    "distill.cli.run",
    "distill.cli.sft",
    "distill.cli.grpo",
]


def add_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command group `distillery NAME SUB ...`; plain `distillery NAME` prints the group's help."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=lambda args: _usage(parser))
    return parser.add_subparsers(metavar="SUBCOMMAND", title="subcommands")


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False,
                         section: str | None = None, example: str | None = None,
                         config: str | None = None) -> None:
    """`--config RECIPE.yaml` and repeatable `--set key.path=value`, for `recipes.config.load_config`.

    section: the recipe section the command reads; `--set` keys are relative to it.
    example: a `--set` valid for this command, shown in its help.
    config: import path of the command's config dataclass ("pkg.module:Class"); its keys and
        defaults are listed at the end of `--help` (see distill/cli/confighelp.py).
    """
    where = f"the recipe's `{section}:` section" if section else "the config file"
    parser.add_argument("--config", required=required, metavar="YAML",
                        help=f"recipe or config file; this command reads {where}")
    relative = f"KEY is relative to the `{section}:` section" if section else "KEY is a config key"
    shown = f", e.g. --set {example}" if example else ""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one config value ({relative}; VALUE is read as YAML){shown} (repeatable)",
    )
    if config is not None:
        from distill.cli.confighelp import add_config_help
        add_config_help(parser, config, section)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _version() -> str:
    try:
        return metadata.version("r1-distillery")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each module in COMMAND_MODULES adds its group, failed imports are listed."""
    parser = argparse.ArgumentParser(
        prog="distillery",
        description="Reasoning distillation: teacher CoT -> verified samples -> SFT -> GRPO -> eval.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.set_defaults(func=lambda args: _usage(parser))
    subparsers = parser.add_subparsers(metavar="COMMAND", title="commands")
    unavailable = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            unavailable.append(f"{name} ({e})")
            continue
        module.register(subparsers)
    if unavailable:
        parser.epilog = "unavailable command modules: " + "; ".join(unavailable)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append "(default: X)" to every option's help that has a real default and does not say it
    already, in every subcommand (flags off by default and empty lists are left alone)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _show_defaults(sub)
        elif action.option_strings and action.help is not argparse.SUPPRESS and not (
                action.default is None or action.default is False or action.default == []
                or action.default is argparse.SUPPRESS or "default" in (action.help or "")):
            action.help = f"{action.help} (default: %(default)s)" if action.help else \
                "default: %(default)s"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `distillery` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"distillery: error: {e}", file=sys.stderr)
        return 2
    return 0 if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
