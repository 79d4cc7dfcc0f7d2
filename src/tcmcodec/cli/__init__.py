"""The ``tcm`` command line (entry point :func:`main`); see :mod:`tcmcodec.cli.main`."""

from __future__ import annotations

from .main import PROG, build_parser, main
from .registry import COMMANDS, CLIError, Command, UsageError, command

__all__ = ["main", "build_parser", "PROG", "COMMANDS", "Command", "CLIError", "UsageError", "command"]
