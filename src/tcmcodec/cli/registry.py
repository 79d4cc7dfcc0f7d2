"""The subcommand registry of ``tcm`` and its expected-failure exceptions.

A command module registers each subcommand with :func:`command`; :mod:`tcmcodec.cli.main` imports the
command modules in ``tcm --help`` order and dispatches through :data:`COMMANDS`. A subcommand returns
its exit status (None = 0). Expected failures are raised, not printed: :class:`UsageError` (exit 2),
:class:`CLIError`, ``FormatError``, ``ValueError`` and ``OSError`` (exit 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CLIError", "UsageError", "Parser", "Command", "COMMANDS", "command"]


class CLIError(Exception):
    """An expected failure: printed as one line, exit status 1."""

    exit_code = 1


class UsageError(CLIError):
    """Bad command line: exit status 2."""

    exit_code = 2


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing the usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure(parser)`` adds its arguments, ``run(args)`` does the work.

    A ``passthrough`` command owns its command line: ``run`` gets the list of arguments after its
    name (``tcm train ...``: the trainer has its own parser and ``--help``).
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any], "int | None"]
    passthrough: bool = False


#: Registered subcommands, in ``tcm --help`` order.
COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    passthrough: bool = False,
) -> Callable[[Callable[[Any], "int | None"]], Callable[[Any], "int | None"]]:
    """Decorator registering ``run(args)`` as subcommand ``name`` (the function's docstring is its description).

    Args:
        name: the subcommand.
        help: one line for ``tcm --help``.
        configure: adds the subcommand's arguments to its parser.
        passthrough: ``run`` takes the raw argument list instead of parsed arguments.
    """

    def deco(run: Callable[[Any], "int | None"]) -> Callable[[Any], "int | None"]:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        COMMANDS[name] = Command(name, help, configure or (lambda p: None), run, passthrough)
        return run

    return deco
