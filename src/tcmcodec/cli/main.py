"""The ``tcm`` command-line tool: the parser and :func:`main`.

Subcommands live in one module per group and register themselves in :mod:`tcmcodec.cli.registry`:
:mod:`~tcmcodec.cli.coding` (compress, decompress, info, models), :mod:`~tcmcodec.cli.weights`, :mod:`~tcmcodec.cli.demo`,
:mod:`~tcmcodec.cli.evaluation` (eval, anchors, bdrate, plot), :mod:`~tcmcodec.cli.training` (train).
This module imports them in that order, which is the ``tcm --help`` order, and they import only the
registry and :mod:`~tcmcodec.cli.options`, never this module: there is no import cycle.

:func:`main` prints expected failures (:class:`~tcmcodec.cli.registry.CLIError`, ``FormatError``,
``ValueError``, ``OSError``) as ONE line ``tcm: error: ...`` on stderr, never a traceback (``tcm --debug
...`` re-raises instead). Warnings are printed as ``tcm: warning: ...``. Outputs are written with
:func:`~tcmcodec.cli.options.write_atomic`, so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from tcmcodec import __version__
from tcmcodec.errors import ResourceError, one_line

from . import coding, weights, demo, evaluation, training  # noqa: F401 - register the subcommands, in --help order
from .registry import COMMANDS, CLIError, Parser

__all__ = ["main", "build_parser", "PROG"]

PROG = "tcm"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``tcm`` parser with every registered subcommand."""
    parser = Parser(prog=PROG, description="Learned image compression with the TCM model (.tcm files).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="torch CPU threads (default: torch's choice; 1 is fastest on a busy machine)")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for cmd in COMMANDS.values():
        if cmd.passthrough:
            subs.add_parser(cmd.name, help=cmd.help, add_help=False)
            continue
        sub = subs.add_parser(cmd.name, help=cmd.help, description=(cmd.run.__doc__ or cmd.help).strip())
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        cmd.configure(sub)
    return parser


def _show_warning(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None) -> None:
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tcm``; returns the exit status (0 ok, 1 failure, 2 bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            parser = build_parser()
            args, rest = parser.parse_known_args(argv)
            if args.command is None:
                parser.print_help(sys.stderr)
                return 2
            cmd = COMMANDS[args.command]
            if rest and not cmd.passthrough:
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            if args.threads is not None:
                import torch

                torch.set_num_threads(args.threads)
            if cmd.passthrough:  # owns its flags and its --help (tcm train)
                return int(cmd.run([a for a in rest if a != "--debug"]) or 0)
            return int(cmd.run(args) or 0)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except (CLIError, ValueError, OSError, ImportError, ResourceError) as exc:  # FormatError is a ValueError
            if debug:
                raise
            code = exc.exit_code if isinstance(exc, CLIError) else 1
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
            return code
        except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --debug
            if debug:
                raise
            print(f"{PROG}: error: internal error: {type(exc).__name__}: {one_line(exc)} "
                  f"(run 'tcm --debug ...' for the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
