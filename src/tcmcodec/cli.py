"""The ``tcm`` command-line tool.

One subcommand per function, registered with :func:`command`::

    def _configure_train(p: argparse.ArgumentParser) -> None:
        p.add_argument("--epochs", type=int, default=10)

    @command("train", "train a model", _configure_train)
    def cmd_train(args: argparse.Namespace) -> int | None:
        from .train import main as train_main   # heavy imports inside the function
        ...

Subcommands may live in other modules (``demo``: :mod:`tcmcodec.demo`; ``anchors``, ``bdrate``, ``plot``:
:mod:`tcmcodec.cli_eval`): they import :func:`command` from here, and this module imports them so that they
register. A subcommand returns its exit status (None = 0). Expected failures are raised, not printed:
:class:`UsageError` (exit 2), :class:`CLIError`, ``FormatError``, ``ValueError`` and ``OSError``
(exit 1); :func:`main` prints them as ONE line ``tcm: error: ...`` on stderr, never a traceback
(``tcm --debug ...`` re-raises instead). Warnings are printed as ``tcm: warning: ...``.
Outputs are written with :func:`write_atomic` (temporary file in the same directory, then
``os.replace``; :mod:`tcmcodec._fileio`), so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, _fileio
from .errors import FormatError, one_line

__all__ = ["main", "build_parser", "command", "Command", "COMMANDS", "CLIError", "UsageError", "write_atomic"]

PROG = "tcm"


class CLIError(Exception):
    """An expected failure: printed as one line, exit status 1."""

    exit_code = 1


class UsageError(CLIError):
    """Bad command line: exit status 2."""

    exit_code = 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing the usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure(parser)`` adds its arguments, ``run(args)`` does the work."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], "int | None"]


#: Registered subcommands, in ``tcm --help`` order.
COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Callable[[argparse.Namespace], "int | None"]], Callable[[argparse.Namespace], "int | None"]]:
    """Decorator registering ``run(args)`` as subcommand ``name`` (the function's docstring is its description)."""

    def deco(run: Callable[[argparse.Namespace], "int | None"]) -> Callable[[argparse.Namespace], "int | None"]:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        COMMANDS[name] = Command(name, help, configure or (lambda p: None), run)
        return run

    return deco


# --------------------------------------------------------------------------------------- helpers


def _say(args: argparse.Namespace, msg: str) -> None:
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


def _check_inputs(paths: Sequence[str]) -> list[Path]:
    out = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise CLIError(f"{p}: no such file")
        if path.is_dir():
            raise CLIError(f"{p}: is a directory")
        out.append(path)
    return out


def _plan_outputs(inputs: Sequence[Path], out: str | None, suffix: str, force: bool) -> list[Path]:
    """Output path of each input: ``-o FILE`` (one input), ``-o DIR`` or beside the input.

    Paths named explicitly with ``-o FILE`` are overwritten; derived ones only with ``--force``.
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
            outputs, explicit = [target], True
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        key = dst.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {src} would both be written to {dst}")
        if key == src.resolve():
            raise UsageError(f"{dst}: output would overwrite the input")
        seen[key] = src
        if not explicit and not force and dst.exists():
            raise CLIError(f"{dst} already exists (use --force to overwrite, or -o)")
    if out is not None and not explicit:
        Path(out).mkdir(parents=True, exist_ok=True)
    return outputs


def _progress(items: Sequence[Any], args: argparse.Namespace, unit: str) -> Any:
    if len(items) < 2 or args.quiet:
        return items
    from tqdm import tqdm

    return tqdm(items, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


def _model_arg(args: argparse.Namespace, default: str | None) -> str | None:
    """``--model``, else the default unless a checkpoint decides the architecture."""
    if args.model is not None:
        from . import zoo

        try:
            zoo.get_preset(args.model)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return args.model
    return None if args.checkpoint is not None else default


def _add_model_args(p: argparse.ArgumentParser, default_model: str | None) -> None:
    shown = f" (default: {default_model}, or what --checkpoint holds)" if default_model else ""
    p.add_argument("--model", metavar="NAME", help=f"model preset, see 'tcm models'{shown}")
    p.add_argument("--checkpoint", metavar="PATH", help="weights file (.safetensors, tcm train .pt, official .pth.tar)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _add_output_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--output", metavar="OUT",
                   help=f"output file (one input) or directory (default: beside each input, {what})")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _human(n: int) -> str:
    return f"{n:,} B"


# --------------------------------------------------------------------------------------- compress


def _configure_compress(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN", help="images (PNG, JPEG, ... anything Pillow reads)")
    _add_output_args(p, "IN.tcm")
    _add_model_args(p, "tcm-xs")
    p.add_argument("--quality", type=float, metavar="Q",
                   help="quality of continuous-rate models, 1..8 for tcm-xs (default: the model's)")
    p.add_argument("--pad-mode", choices=("replicate", "zero"), default="replicate",
                   help="padding to a multiple of 64 (default: replicate)")


@command("compress", "compress images into .tcm files", _configure_compress)
def cmd_compress(args: argparse.Namespace) -> int:
    """Compress images into .tcm files (one per input)."""
    if args.quality is not None and not math.isfinite(args.quality):
        raise UsageError(f"--quality must be a finite number, got {args.quality}")
    model = _model_arg(args, "tcm-xs")
    if model is not None and args.quality is not None:  # early check, before any file is looked at
        from . import zoo

        levels = zoo.get_preset(model).config.get("num_gains", 0)
        if levels and not 1 <= args.quality <= levels:
            raise UsageError(f"--quality: quality must be in [1, {levels}], got {args.quality:g}")
    inputs = _check_inputs(args.inputs)
    outputs = _plan_outputs(inputs, args.output, ".tcm", args.force)
    from . import codec

    c = codec.Codec(model, args.checkpoint, args.device, pad_mode=args.pad_mode)
    try:
        codec.check_quality(c.model, args.quality)
    except ValueError as e:
        raise UsageError(f"--quality: {e}") from None
    for src, dst in zip(_progress(inputs, args, "image"), outputs):
        t0 = time.perf_counter()
        data, rec = c.compress_with_reconstruction(src, args.quality)
        write_atomic(dst, data)
        bpp = 8 * len(data) / (rec.width * rec.height)
        _say(args, f"{src} -> {dst}: {rec.width}x{rec.height} {rec.mode}, {len(data):,} bytes, "
                   f"{bpp:.4f} bpp ({time.perf_counter() - t0:.1f} s)")
    return 0


# --------------------------------------------------------------------------------------- decompress

def _image_format(path: Path) -> str:
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"{path}: cannot tell the image format to write from the extension {path.suffix!r}")
    return fmt


def _configure_decompress(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN.tcm", help=".tcm files")
    _add_output_args(p, "IN.png")
    _add_model_args(p, None)


@command("decompress", "decode .tcm files into images (PNG by default)", _configure_decompress)
def cmd_decompress(args: argparse.Namespace) -> int:
    """Decode .tcm files. The model is the one the file names, with its shipped weights,
    unless --model / --checkpoint say otherwise. The output format follows the output extension."""
    model = _model_arg(args, None)
    inputs = _check_inputs(args.inputs)
    outputs = _plan_outputs(inputs, args.output, ".png", args.force)
    formats = [_image_format(p) for p in outputs]
    from . import bitstream, codec

    loaded: codec.Codec | None = None
    if model is not None or args.checkpoint is not None:
        loaded = codec.Codec(model, args.checkpoint, args.device)
    for src, dst, fmt in zip(_progress(inputs, args, "file"), outputs, formats):
        t0 = time.perf_counter()
        data = src.read_bytes()
        try:
            img = loaded.decompress(data) if loaded is not None else codec.decompress(data, device=args.device)
        except FormatError as e:
            raise FormatError(f"{src}: {e}") from None
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        write_atomic(dst, buf.getvalue())
        header = bitstream.read_header(data)
        _say(args, f"{src} -> {dst}: {img.width}x{img.height} {img.mode}, {header.model} q{header.quality:g} "
                   f"({time.perf_counter() - t0:.1f} s)")
    return 0


# --------------------------------------------------------------------------------------- info


def _info(path: Path) -> dict[str, Any]:
    from . import bitstream

    data = path.read_bytes()
    try:
        h, streams = bitstream.unpack(data, max_pixels=None)
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
    payload = sum(len(s) for s in streams.values())
    return {
        "file": str(path),
        "bytes": len(data),
        "bpp": 8 * len(data) / (h.width * h.height),
        "model": h.model,
        "weights_id": h.weights_id.hex() if h.has_weights_id else None,
        "quality": h.quality,
        "width": h.width,
        "height": h.height,
        "mode": h.mode,
        "pad_mode": h.pad_mode,
        "z_shape": list(h.z_shape),
        "padded_size": list(h.padded_size),
        "streams": {name: len(s) for name, s in streams.items()},
        "overhead": len(data) - payload,
    }


def _configure_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="FILE.tcm")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one object per file (sizes as [height, width])")


@command("info", "show the header and stream sizes of .tcm files", _configure_info)
def cmd_info(args: argparse.Namespace) -> int:
    """Show what a .tcm file holds (validates the whole file, CRC included; loads no model)."""
    infos = [_info(p) for p in _check_inputs(args.inputs)]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for i, d in enumerate(infos):
        if i:
            print()
        quality = "fixed-rate" if d["quality"] == 0 else f"{d['quality']:g}"
        streams = ", ".join(f"{k} {_human(v)}" for k, v in d["streams"].items())
        print(f"{d['file']}: {d['bytes']:,} bytes, {d['bpp']:.4f} bpp")
        print(f"  model     {d['model']} (weights id {d['weights_id'] or 'not recorded'})")
        print(f"  quality   {quality}")
        print(f"  image     {d['width']}x{d['height']} {d['mode']}")
        (ph, pw), (zh, zw) = d["padded_size"], d["z_shape"]
        print(f"  padding   {d['pad_mode']} to {pw}x{ph} (z {zw}x{zh})")
        print(f"  streams   {streams}")
        print(f"  overhead  {_human(d['overhead'])} (header, stream table, CRC)")
    return 0


# --------------------------------------------------------------------------------------- models


def _configure_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


@command("models", "list the model presets", _configure_models)
def cmd_models(args: argparse.Namespace) -> int:
    """List the registered model presets and whether their weights are installed."""
    from . import zoo

    rows = []
    for name in zoo.list_models():
        p = zoo.get_preset(name)
        levels = p.config.get("num_gains", 0)
        rows.append({
            "name": name,
            "pretrained": p.weights_path() is not None,
            "quality": [1, levels] if levels else None,
            "default_quality": p.default_quality,
            "description": p.description,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  weights    quality  description")
    for r in rows:
        q = f"{r['quality'][0]}..{r['quality'][1]}" if r["quality"] else "fixed"
        w = "installed" if r["pretrained"] else "-"
        print(f"{r['name']:<{width}}  {w:<9}  {q:<7}  {r['description']}")
    return 0


# --------------------------------------------------------------------------------------- demo
# --------------------------------------------------------------------------------------- demo, anchors, bdrate, plot

# Their modules register them here, keeping the ``tcm --help`` order (both import only this module's helpers).
from . import demo  # noqa: E402,F401  -- registers "demo"
from . import cli_eval  # noqa: E402,F401  -- registers "anchors", "bdrate", "plot"
from .cli_eval import BDRATE_METHODS, BDRATE_METRICS  # noqa: E402,F401  -- re-exported

#: Names that moved to :mod:`tcmcodec.demo`, still importable from here (resolved on use: see ``__getattr__``).
_MOVED_TO_DEMO = ("jpeg_for_psnr", "_jpeg_bytes", "cmd_demo")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_DEMO:
        return getattr(demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------- main


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
    parser = _Parser(prog=PROG, description="Learned image compression with the TCM model (.tcm files).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="torch CPU threads (default: torch's choice; 1 is fastest on a busy machine)")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in COMMANDS.values():
        sub = subs.add_parser(cmd.name, help=cmd.help, description=(cmd.run.__doc__ or cmd.help).strip())
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        cmd.configure(sub)
        sub.set_defaults(_run=cmd.run)
    return parser


def _show_warning(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None) -> None:
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="training options: see 'tcm train --help'")


@command("train", "train a model (options: 'tcm train --help')", _configure_train)
def cmd_train(args: argparse.Namespace) -> int:
    """Train a TCM model (tcmcodec.train); DDP with torchrun -m tcmcodec.train."""
    from . import train

    return train.main(args.train_args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tcm``; returns the exit status (0 ok, 1 failure, 2 bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if argv[:1] == ["train"]:  # the trainer owns its (many) flags and its --help
                from . import train

                return train.main([a for a in argv[1:] if a != "--debug"])
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help(sys.stderr)
                return 2
            if args.threads is not None:
                import torch

                torch.set_num_threads(args.threads)
            return int(args._run(args) or 0)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except (CLIError, ValueError, OSError, ImportError) as exc:  # FormatError is a ValueError
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
