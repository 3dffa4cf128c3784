"""distill.cli: command modules register groups; user errors print cleanly, bugs propagate."""

from __future__ import annotations

import sys
import types

import pytest

from distill import cli


def _fake_module(monkeypatch) -> list:
    """Registers `distillery fake ok|fail|crash` from an in-memory module; returns the calls seen."""
    calls = []
    errors = {"value": ValueError("fake.yaml: seed: expected int"), "missing": FileNotFoundError("no.yaml")}

    def run(args):
        calls.append((args.sub, args.config, args.overrides))
        if args.sub in errors:
            raise errors[args.sub]
        if args.sub == "crash":
            raise RuntimeError("a bug")
        return None

    def register(subparsers):
        group = cli.add_group(subparsers, "fake", "a fake command group")
        for sub in ("ok", "value", "missing", "crash"):
            p = group.add_parser(sub, help=f"the {sub} command")
            cli.add_config_arguments(p)
            p.set_defaults(func=run, sub=sub)

    module = types.ModuleType("fake_cli_commands")
    module.register = register
    monkeypatch.setitem(sys.modules, "fake_cli_commands", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["fake_cli_commands", "no_such_module_for_cli_test"])
    return calls


def test_help_exits_zero_and_lists_groups(monkeypatch, capsys):
    _fake_module(monkeypatch)
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "fake" in out and "a fake command group" in out
    assert "no_such_module_for_cli_test" in out  # a failed import is reported, not fatal


def test_help_works_with_the_real_command_modules(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    assert "usage: distillery" in capsys.readouterr().out


def test_command_runs_with_config_and_overrides(monkeypatch):
    calls = _fake_module(monkeypatch)
    assert cli.main(["fake", "ok", "--config", "r.yaml", "--set", "a.b=1", "--set", "c=x"]) == 0
    assert calls == [("ok", "r.yaml", ["a.b=1", "c=x"])]


@pytest.mark.parametrize("sub, message", [("value", "fake.yaml: seed: expected int"), ("missing", "no.yaml")])
def test_user_errors_print_cleanly_with_exit_2(monkeypatch, capsys, sub, message):
    _fake_module(monkeypatch)
    assert cli.main(["fake", sub]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distillery: error: ") and message in err
    assert "Traceback" not in err


def test_other_exceptions_propagate(monkeypatch):
    _fake_module(monkeypatch)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["fake", "crash"])


def test_bare_group_prints_its_help(monkeypatch, capsys):
    _fake_module(monkeypatch)
    assert cli.main(["fake"]) == 2
    assert "ok" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_unknown_command_is_an_argparse_error(monkeypatch):
    _fake_module(monkeypatch)
    with pytest.raises(SystemExit) as e:
        cli.main(["nope"])
    assert e.value.code == 2
