"""The dispatcher: every command is there, and a command that cannot be imported is an error, never dropped."""

import pytest

from vit_transfer import cli


def subcommands(parser) -> set[str]:
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_every_command_is_registered():
    assert subcommands(cli.build_parser()) == set(cli.COMMANDS)


def test_a_missing_command_module_is_an_error_naming_it(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "ghost", "ghost")
    with pytest.raises(ModuleNotFoundError, match="vit_transfer.commands.ghost"):
        cli.build_parser()

