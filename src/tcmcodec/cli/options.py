"""Options and helpers shared by the ``tcm`` subcommands: model options, output planning, progress, atomic writes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tcmcodec import _fileio
from tcmcodec.errors import ResourceError, one_line

from .registry import CLIError, UsageError

__all__ = [
    "say", "write_atomic", "check_quality_arg", "check_inputs", "plan_outputs", "run_batch", "progress", "model_arg", "add_model_args",
    "add_output_args",
]


def say(args: argparse.Namespace, msg: str) -> None:
    """A progress / result line on stdout (not with --quiet); safe while a tqdm bar is shown."""
    if getattr(args, "quiet", False):
        return
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stdout)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`tcmcodec._fileio.write_atomic`: a temporary file in the
    same directory, then ``os.replace``); :class:`CLIError` if the directory does not exist."""
    directory = Path(path).parent
    if not directory.is_dir():
        raise CLIError(f"{directory}: no such directory")
    _fileio.write_atomic(path, data)


def check_quality_arg(model: Any, quality: float | None) -> None:
    """``--quality`` checked against a loaded model (``codec.check_quality``); :class:`UsageError` if wrong."""
    from tcmcodec import codec

    try:
        codec.check_quality(model, quality)
    except ValueError as e:
        raise UsageError(f"--quality: {e}") from None


def check_inputs(paths: Sequence[str]) -> list[Path]:
    out = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise CLIError(f"{p}: no such file")
        if path.is_dir():
            raise CLIError(f"{p}: is a directory")
        out.append(path)
    return out


def plan_outputs(
    inputs: Sequence[Path], out: str | None, suffix: str, force: bool, skip_existing: bool = False
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Output path of each input: ``-o FILE`` (one input), ``-o DIR`` or beside the input.

    Checked before any work: the output folder (created for ``-o DIR``; must exist for ``-o FILE``),
    two inputs onto one output, an output onto its input, and existing outputs. Paths named explicitly
    with ``-o FILE`` are overwritten; derived ones only with ``--force``, or skipped with ``--skip-existing``.

    Returns:
        ``(pairs, skipped)``: the (input, output) pairs to do, and the inputs skipped because their
        output exists.
    """
    explicit = False
    if out is None:
        outputs = [p.with_suffix(suffix) for p in inputs]
    else:
        target = Path(out)
        as_dir = len(inputs) > 1 or target.is_dir() or out.endswith(("/", os.sep))
        if as_dir:
            if target.exists() and not target.is_dir():
                raise UsageError(f"-o {out}: not a directory (needed for {len(inputs)} inputs)")
            outputs = [target / (p.stem + suffix) for p in inputs]
        else:
            if not target.parent.is_dir():
                raise CLIError(f"{target.parent}: no such directory")
            outputs, explicit = [target], True
    seen: dict[Path, Path] = {}
    pairs, skipped = [], []
    for src, dst in zip(inputs, outputs):
        key = dst.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {src} would both be written to {dst}")
        if key == src.resolve():
            raise UsageError(f"{dst}: output would overwrite the input")
        seen[key] = src
        if not explicit and not force and dst.exists():
            if skip_existing:
                skipped.append(src)
                continue
            raise CLIError(f"{dst} already exists (use --force to overwrite, --skip-existing to skip, or -o)")
        pairs.append((src, dst))
    if out is not None and not explicit:
        Path(out).mkdir(parents=True, exist_ok=True)
    return pairs, skipped


def run_batch(
    args: argparse.Namespace,
    pairs: Sequence[tuple[Path, Path]],
    skipped: Sequence[Path],
    unit: str,
    work: Callable[[Path, Path], str],
) -> int:
    """Run ``work(src, dst)`` (it returns the line to print) for every pair, going on past failures.

    A failure of one input (``FormatError``, ``ValueError``, ``OSError``, ``ResourceError``, ``CLIError``) prints one
    line ``tcm: error: SRC: reason`` on stderr (``--debug`` re-raises); a batch ends with a summary
    line (``12 written, 2 failed, 3 skipped``). Returns the exit status: 1 if any input failed.
    """
    written = failed = 0
    for src, dst in progress(pairs, args, unit):
        try:
            line = work(src, dst)
        except (CLIError, ValueError, OSError, ResourceError) as exc:  # FormatError is a ValueError
            if getattr(args, "debug", False):
                raise
            from tqdm import tqdm

            tqdm.write(f"tcm: error: {src}: {one_line(exc)}", file=sys.stderr)  # safe under a progress bar
            failed += 1
            continue
        written += 1
        say(args, line)
    if len(pairs) + len(skipped) > 1 or skipped:
        summary = f"{written} written, {failed} failed"
        say(args, summary + (f", {len(skipped)} skipped (output exists)" if skipped else ""))
    return 1 if failed else 0


def progress(items: Sequence[Any], args: argparse.Namespace, unit: str) -> Any:
    """``items`` with a progress bar on stderr for batches (not with --quiet, not when stderr is no terminal)."""
    if len(items) < 2 or args.quiet or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


def model_arg(args: argparse.Namespace, default: str | None) -> str | None:
    """``--model``, else the default unless a checkpoint decides the architecture."""
    if args.model is not None:
        from tcmcodec import zoo

        try:
            zoo.get_preset(args.model)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return args.model
    return None if args.checkpoint is not None else default


def add_model_args(p: argparse.ArgumentParser, default_model: str | None) -> None:
    shown = f" (default: {default_model}, or what --checkpoint holds)" if default_model else ""
    p.add_argument("--model", metavar="NAME", help=f"model preset, see 'tcm models'{shown}")
    p.add_argument("--checkpoint", metavar="PATH", help="weights file (.safetensors, tcm train .pt, official .pth.tar)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_output_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--output", metavar="OUT",
                   help=f"output file (one input) or directory (default: beside each input, {what})")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output exists (resume an interrupted batch)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
