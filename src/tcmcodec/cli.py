"""The ``tcm`` command-line tool.

One subcommand per function, registered with :func:`command`::

    def _configure_train(p: argparse.ArgumentParser) -> None:
        p.add_argument("--epochs", type=int, default=10)

    @command("train", "train a model", _configure_train)
    def cmd_train(args: argparse.Namespace) -> int | None:
        from .train import main as train_main   # heavy imports inside the function
        ...

A subcommand returns its exit status (None = 0). Expected failures are raised, not printed:
:class:`UsageError` (exit 2), :class:`CLIError`, ``FormatError``, ``ValueError`` and ``OSError``
(exit 1); :func:`main` prints them as ONE line ``tcm: error: ...`` on stderr, never a traceback
(``tcm --debug ...`` re-raises instead). Warnings are printed as ``tcm: warning: ...``.
Outputs are written with :func:`write_atomic` (temporary file in the same directory, then
``os.replace``), so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import FormatError

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
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, then ``os.replace``."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise CLIError(f"{directory}: no such directory")
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
        codec._encode_quality(c.model, args.quality)
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


def _jpeg_bytes(img: Any, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=True)  # 4:2:0
    return buf.getvalue()


def jpeg_for_psnr(img: Any, target: float) -> tuple[int, bytes, float] | None:
    """Smallest-quality Pillow JPEG (4:2:0) whose PSNR reaches ``target`` dB: ``(quality, bytes, psnr)``.

    Binary search over quality 1..100 (PSNR grows with quality); None if even quality 100 falls short.
    """
    from PIL import Image

    from .metrics import psnr

    def measure(q: int) -> tuple[bytes, float]:
        data = _jpeg_bytes(img, q)
        return data, psnr(img, Image.open(io.BytesIO(data)))

    best = None
    lo, hi = 1, 100
    while lo <= hi:
        mid = (lo + hi) // 2
        data, p = measure(mid)
        if p >= target:
            best, hi = (mid, data, p), mid - 1
        else:
            lo = mid + 1
    return best


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR", help="where to write the outputs (default: a new temp dir)")
    p.add_argument("--model", default="tcm-xs", metavar="NAME", help="model preset (default: tcm-xs)")
    p.add_argument("--checkpoint", metavar="PATH", help="use these weights instead of the shipped ones")
    p.add_argument("--quality", type=float, metavar="Q", help="quality (default: the model's)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


@command("demo", "compress a sample photo and compare with JPEG", _configure_demo)
def cmd_demo(args: argparse.Namespace) -> int:
    """Compress and decompress the bundled sample photo with the shipped weights, then find the
    size JPEG needs for the same PSNR."""
    from importlib import resources

    from PIL import Image

    from . import codec, zoo
    from .metrics import psnr

    try:
        preset = zoo.get_preset(args.model)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.checkpoint is None and preset.weights_path() is None:
        raise CLIError(
            f"the {args.model} weights are not installed (tcmcodec/weights/{preset.weights or '-'} is missing); "
            "pass --checkpoint PATH to run the demo with other weights"
        )
    out_dir = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="tcm-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = resources.files("tcmcodec") / "data" / "sample.png"
    with resources.as_file(sample) as path:
        original_png = path.read_bytes()
    with Image.open(io.BytesIO(original_png)) as im:
        img = im.convert("RGB")

    t0 = time.perf_counter()
    c = codec.Codec(args.model, args.checkpoint, args.device)
    t_load = time.perf_counter() - t0
    try:
        codec._encode_quality(c.model, args.quality)
    except ValueError as e:
        raise UsageError(f"--quality: {e}") from None
    t0 = time.perf_counter()
    data, rec = c.compress_with_reconstruction(img, args.quality)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = c.decompress(data)
    t_dec = time.perf_counter() - t0
    exact = dec.tobytes() == rec.tobytes()

    pixels = img.width * img.height
    quality = codec.bitstream.read_header(data).quality
    p_tcm = psnr(img, dec)
    jpeg = jpeg_for_psnr(img, p_tcm)

    write_atomic(out_dir / "sample.png", original_png)
    write_atomic(out_dir / "sample.tcm", data)
    buf = io.BytesIO()
    dec.save(buf, format="PNG")
    write_atomic(out_dir / "sample_decoded.png", buf.getvalue())

    weights = "shipped weights" if args.checkpoint is None else f"weights {args.checkpoint}"
    print(f"tcm demo: {c.name} ({weights}), quality {quality:g}, sample photo {img.width}x{img.height} "
          "(Washington Monument, Carol M. Highsmith, public domain)")
    print(f"  original PNG  {len(original_png):>9,} bytes  {8 * len(original_png) / pixels:6.3f} bpp")
    print(f"  tcm           {len(data):>9,} bytes  {8 * len(data) / pixels:6.3f} bpp  PSNR {p_tcm:5.2f} dB  "
          f"(encode {t_enc:.1f} s, decode {t_dec:.1f} s, model load {t_load:.1f} s; "
          f"{'bit-exact' if exact else 'NOT bit-exact'})")
    if jpeg is None:
        print(f"  JPEG 4:2:0    cannot reach {p_tcm:.2f} dB even at quality 100")
    else:
        q, jdata, p_jpeg = jpeg
        name = f"sample_jpeg_q{q}.jpg"
        write_atomic(out_dir / name, jdata)
        print(f"  JPEG 4:2:0    {len(jdata):>9,} bytes  {8 * len(jdata) / pixels:6.3f} bpp  PSNR {p_jpeg:5.2f} dB  "
              f"(quality {q}, the smallest JPEG at >= {p_tcm:.2f} dB)")
        if len(jdata) >= len(data):
            print(f"  JPEG needs {len(jdata) / len(data):.2f}x the bytes of tcm at the same PSNR "
                  f"(tcm saves {100 * (1 - len(data) / len(jdata)):.0f}%)")
        else:
            print(f"  tcm needs {len(data) / len(jdata):.2f}x the bytes of JPEG at the same PSNR")
    print(f"  outputs in {out_dir}")
    return 0 if exact else 1


# --------------------------------------------------------------------------------------- anchors / bdrate / plot


def _parse_crop(text: str) -> int | tuple[int, int]:
    try:
        if "x" in text:
            w, h = text.lower().split("x")
            return (int(w), int(h))
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None


def _parse_sweep(text: str) -> tuple[str, list[float]]:
    key, sep, values = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return key, [float(v) for v in values.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CODEC=V1,V2,..., got {text!r}") from None


def _configure_anchors(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DIR", help="folder of images (e.g. ../shared/data/kodak)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write <codec>.json")
    p.add_argument("--codecs", metavar="LIST", help="comma-separated codec keys (default: all available)")
    p.add_argument("--sweep", action="append", type=_parse_sweep, default=[], metavar="CODEC=V1,V2,...",
                   help="override a codec's sweep values (repeatable)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--crop", type=_parse_crop, metavar="N|WxH", help="center-crop every image (quick runs)")
    p.add_argument("--max-images", type=int, metavar="N", help="use the first N images")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-image progress lines")


@command("anchors", "measure classical codecs (JPEG, WebP, AVIF, ...) on a dataset", _configure_anchors)
def cmd_anchors(args: argparse.Namespace) -> int:
    """Encode, decode and measure classical codecs on every image of a folder; write one
    CompressAI-style results JSON per codec."""
    from . import anchors

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()] if args.codecs else None
    if not Path(args.dataset).is_dir():
        raise CLIError(f"{args.dataset}: not a directory")
    written = anchors.run(args.dataset, args.output, codecs, args.workers, qualities=dict(args.sweep) or None,
                          crop=args.crop, max_images=args.max_images, progress=not args.quiet)
    for path in written:
        print(path)
    if not written:
        raise CLIError("no codec could be measured (their libraries are missing)")
    return 0


# Same as tcmcodec.bdrate.METHODS / METRICS (not imported here: building the parser stays cheap).
BDRATE_METHODS = ("pchip", "cubic")
BDRATE_METRICS = ("psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db")


def _configure_bdrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("anchor", metavar="ANCHOR.json", help="results of the reference codec")
    p.add_argument("tests", nargs="+", metavar="TEST.json", help="results to compare with the anchor")
    p.add_argument("--method", choices=BDRATE_METHODS, default="pchip", help="interpolation (default: pchip)")
    p.add_argument("--metric", choices=BDRATE_METRICS, default="psnr-rgb", help="quality axis (default: psnr-rgb)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("bdrate", "Bjøntegaard delta rate / PSNR between results files", _configure_bdrate)
def cmd_bdrate(args: argparse.Namespace) -> int:
    """BD-rate (percent, negative = fewer bits) and BD-PSNR of each test curve against the anchor."""
    from . import bdrate, results

    anchor = results.load(args.anchor)
    rows = []
    for path in args.tests:
        test = results.load(path)
        rate = bdrate.bd_rate(anchor, test, method=args.method, metric=args.metric)
        dpsnr = bdrate.bd_psnr(anchor, test, method=args.method, metric=args.metric)
        rows.append({"test": test["name"], "anchor": anchor["name"], "metric": args.metric,
                     "method": args.method, "bd_rate": rate, "bd_psnr": dpsnr})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    unit = "dB" if args.metric == "psnr-rgb" else "dB (MS-SSIM)"
    width = max(len(r["test"]) for r in rows)
    for r in rows:
        print(f"{r['test']:<{width}}  BD-rate {r['bd_rate']:+7.2f} %   BD-PSNR {r['bd_psnr']:+6.3f} {unit}   "
              f"vs {r['anchor']} ({args.metric}, {args.method})")
    return 0


def _configure_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="*", metavar="RESULTS.json", help="measured curves (solid)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.add_argument("--reference-dir", metavar="DIR",
                   help="folder of published curves (e.g. ../shared/reference/anchors/kodak)")
    p.add_argument("--published", metavar="LIST",
                   help="comma-separated published curve names in --reference-dir ('' for none; "
                        "default: vtm, bpg, the TCM paper curves)")
    p.add_argument("--title")
    p.add_argument("--max-bpp", type=float, metavar="BPP", help="x-axis limit")
    p.add_argument("--dpi", type=int, default=150)


@command("plot", "plot rate-distortion curves (PSNR and MS-SSIM vs bpp)", _configure_plot)
def cmd_plot(args: argparse.Namespace) -> int:
    """Plot results files, with published curves overlaid, into one PNG."""
    from . import plot

    published = plot.DEFAULT_PUBLISHED if args.published is None else [
        n.strip() for n in args.published.split(",") if n.strip()
    ]
    if not args.results and args.reference_dir is None:
        raise UsageError("nothing to plot: give results files and/or --reference-dir")
    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise UsageError(f"-o {out}: the plot is written as PNG (use a .png name)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError("tcm plot needs matplotlib: pip install 'tcmcodec[eval]'") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tcm-plot-") as tmp:
        tmp_out = Path(tmp) / out.name
        plot.plot_rd(args.results, tmp_out, args.reference_dir, published, title=args.title,
                     max_bpp=args.max_bpp, dpi=args.dpi)
        os.replace(tmp_out, out)
    print(out)
    return 0


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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        msg = f"{exc.filename}: {exc.strerror}"
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


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
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            return code
        except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --debug
            if debug:
                raise
            print(f"{PROG}: error: internal error: {type(exc).__name__}: {_one_line(exc)} "
                  f"(run 'tcm --debug ...' for the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
