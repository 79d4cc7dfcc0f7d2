"""The coding subcommands: ``tcm compress``, ``decompress``, ``info`` and ``models``."""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from tcmcodec.errors import FormatError

from .options import (
    add_model_args,
    add_output_args,
    check_inputs,
    check_quality_arg,
    model_arg,
    plan_outputs,
    run_batch,
    write_atomic,
)
from .registry import UsageError, command


# --------------------------------------------------------------------------------------- compress


def _configure_compress(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN", help="images (PNG, JPEG, ... anything Pillow reads)")
    add_output_args(p, "IN.tcm")
    add_model_args(p, "tcm-xs")
    p.add_argument("--quality", type=float, metavar="Q",
                   help="quality: 1..8 for tcm-xs; for tcm-s the authors' checkpoint 1..6 (lambda 0.0025..0.05, "
                        "downloaded on first use) (default: the model's)")
    p.add_argument("--pad-mode", choices=("replicate", "zero"), default="replicate",
                   help="padding to a multiple of 64 (default: replicate)")
    p.add_argument("--tile", type=int, metavar="PX",
                   help="code in tiles of PX pixels (a multiple of 64; 0: untiled), which bounds memory "
                        "(default: images up to ~1.4 Mpx for tcm-xs, ~0.7 Mpx for tcm-s untiled, larger ones in the "
                        "model's tile, 1024 px for tcm-xs, 704 px for tcm-s)")


@command("compress", "compress images into .tcm files", _configure_compress)
def cmd_compress(args: argparse.Namespace) -> int:
    """Compress images into .tcm files (one per input)."""
    if args.quality is not None and not math.isfinite(args.quality):
        raise UsageError(f"--quality must be a finite number, got {args.quality}")
    model = model_arg(args, "tcm-xs")
    if model is not None and args.quality is not None:  # early check, before any file is looked at
        from tcmcodec import zoo

        preset = zoo.get_preset(model)
        try:
            if preset.published and args.checkpoint is None:
                preset.published_weights(args.quality)
            elif preset.config.num_gains:
                preset.config.check_quality(args.quality)
        except ValueError as e:
            raise UsageError(f"--quality: {e}") from None
    pairs, skipped = plan_outputs(check_inputs(args.inputs), args.output, ".tcm", args.force, args.skip_existing)
    from tcmcodec import codec

    from tcmcodec.codec import container, tiles

    try:
        tiles.tiling_for((1, 1), args.tile)  # the codec's own check of the tile size, as a usage error
    except ValueError as e:
        raise UsageError(f"--tile: {e}") from None
    c = codec.Codec(model, args.checkpoint, args.device, quality=args.quality, pad_mode=args.pad_mode,
                    tile=args.tile)
    check_quality_arg(c.model, args.quality)

    def work(src: Path, dst: Path) -> str:
        t0 = time.perf_counter()
        data = c.compress(src, args.quality)  # no encoder-side reconstruction: one synthesis pass less
        write_atomic(dst, data)
        header = container.read_header(data)
        bpp = 8 * len(data) / (header.width * header.height)
        return (f"{src} -> {dst}: {header.width}x{header.height} {header.mode}, {len(data):,} bytes, "
                f"{bpp:.4f} bpp ({time.perf_counter() - t0:.1f} s)")

    return run_batch(args, pairs, skipped, "image", work)


# --------------------------------------------------------------------------------------- decompress

def _human(n: int) -> str:
    return f"{n:,} B"


def _image_format(path: Path) -> str:
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"{path}: cannot tell the image format to write from the extension {path.suffix!r}")
    return fmt


def _configure_decompress(p: argparse.ArgumentParser) -> None:
    from tcmcodec.codec.container import DEFAULT_MAX_PIXELS

    p.add_argument("inputs", nargs="+", metavar="IN.tcm", help=".tcm files")
    add_output_args(p, "IN.png")
    add_model_args(p, None)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse files of images with more pixels (default: {DEFAULT_MAX_PIXELS}; 0: no limit)")


@command("decompress", "decode .tcm files into images (PNG by default)", _configure_decompress)
def cmd_decompress(args: argparse.Namespace) -> int:
    """Decode .tcm files. The model is the one the file names, with its shipped weights,
    unless --model / --checkpoint say otherwise. The output format follows the output extension."""
    model = model_arg(args, None)
    pairs, skipped = plan_outputs(check_inputs(args.inputs), args.output, ".png", args.force, args.skip_existing)
    formats = {dst: _image_format(dst) for _, dst in pairs}  # before any work
    from tcmcodec import codec
    from tcmcodec.codec import container

    loaded: codec.Codec | None = None
    if model is not None or args.checkpoint is not None:
        loaded = codec.Codec(model, args.checkpoint, args.device)

    def work(src: Path, dst: Path) -> str:
        t0 = time.perf_counter()
        data = src.read_bytes()
        limit = args.max_pixels or None
        img = (loaded.decompress(data, max_pixels=limit) if loaded is not None
               else codec.decompress(data, device=args.device, max_pixels=limit))
        buf = io.BytesIO()
        img.save(buf, format=formats[dst])
        write_atomic(dst, buf.getvalue())
        header = container.read_header(data)
        return (f"{src} -> {dst}: {img.width}x{img.height} {img.mode}, {header.model} q{header.quality:g} "
                f"({time.perf_counter() - t0:.1f} s)")

    return run_batch(args, pairs, skipped, "file", work)


# --------------------------------------------------------------------------------------- info


def _info(path: Path) -> dict[str, Any]:
    from tcmcodec.codec import container as bitstream

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
    infos = [_info(p) for p in check_inputs(args.inputs)]
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
    from tcmcodec import zoo

    rows = []
    for name in zoo.list_models():
        p = zoo.get_preset(name)
        levels = p.levels
        rows.append({
            "name": name,
            "pretrained": p.weights_path() is not None,
            "published": [w.quality for w in p.published],
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
        if r["published"]:
            q = f"{min(r['published'])}..{max(r['published'])}" if len(r["published"]) > 1 else str(r["published"][0])
        w = "installed" if r["pretrained"] else "download" if r["published"] else "-"
        print(f"{r['name']:<{width}}  {w:<9}  {q:<7}  {r['description']}")
    return 0
