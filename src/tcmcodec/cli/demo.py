"""``tcm demo``: compress the bundled sample photo with the shipped weights and compare with JPEG.

Registered on :mod:`tcmcodec.cli` with its :func:`~tcmcodec.cli.command` decorator (``cli`` imports this
module). Nothing heavy is imported at module import: Pillow, torch and the codec load inside the command.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from .options import add_model_args, check_quality_arg, model_arg, write_atomic
from .registry import CLIError, command

__all__ = ["cmd_demo", "jpeg_for_psnr"]


def _jpeg_bytes(img: Any, quality: int) -> bytes:
    """Pillow JPEG 4:2:0 (Huffman-optimized) at ``quality``: the ``jpeg`` anchor's encoder."""
    from tcmcodec.evaluation import codecs as anchor_codecs

    return anchor_codecs.encode("jpeg", img, quality)


def jpeg_for_psnr(img: Any, target: float) -> tuple[int, bytes, float] | None:
    """Smallest-quality Pillow JPEG (4:2:0) whose PSNR reaches ``target`` dB: ``(quality, bytes, psnr)``.

    Binary search over quality 1..100 (PSNR grows with quality); None if even quality 100 falls short.
    """
    from tcmcodec.evaluation.codecs import AnchorCoder
    from tcmcodec.evaluation.measure import measure

    jpeg = AnchorCoder("jpeg")
    best = None
    lo, hi = 1, 100
    while lo <= hi:
        mid = (lo + hi) // 2
        m = measure(jpeg, img, mid, ms_ssim=False)
        if m.psnr >= target:
            best, hi = (mid, m.data, m.psnr), mid - 1
        else:
            lo = mid + 1
    return best


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR", help="where to write the outputs (default: a new temp dir)")
    add_model_args(p, "tcm-xs")
    p.add_argument("--quality", type=float, metavar="Q", help="quality (default: the model's)")


@command("demo", "compress a sample photo and compare with JPEG", _configure_demo)
def cmd_demo(args: argparse.Namespace) -> int:
    """Compress and decompress the bundled sample photo with the shipped weights, then find the
    size JPEG needs for the same PSNR."""
    from importlib import resources

    from PIL import Image

    from tcmcodec import codec, zoo
    from tcmcodec.evaluation.measure import TcmCoder, measure

    model = model_arg(args, "tcm-xs")
    preset = zoo.get_preset(model) if args.checkpoint is None else None
    if preset is not None and preset.weights_path() is None and not preset.published:
        raise CLIError(
            f"the {model} weights are not installed (tcmcodec/zoo/weights/{zoo.get_preset(model).weights or '-'} "
            "is missing); pass --checkpoint PATH to run the demo with other weights"
        )
    out_dir = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="tcm-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = resources.files("tcmcodec") / "data" / "sample.png"
    with resources.as_file(sample) as path:
        original_png = path.read_bytes()
    with Image.open(io.BytesIO(original_png)) as im:
        img = im.convert("RGB")

    t0 = time.perf_counter()
    c = codec.Codec(model, args.checkpoint, args.device)
    t_load = time.perf_counter() - t0
    check_quality_arg(c.model, args.quality)
    m = measure(TcmCoder(c), img, args.quality, ms_ssim=False)
    data, dec, exact, t_enc, t_dec, p_tcm = m.data, m.decoded, m.exact, m.encoding_time, m.decoding_time, m.psnr

    pixels = img.width * img.height
    quality = codec.container.read_header(data).quality
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
    _report_jpeg(jpeg, len(data), p_tcm, pixels, out_dir)
    print(f"  outputs in {out_dir}")
    return 0 if exact else 1


def _report_jpeg(jpeg: tuple[int, bytes, float] | None, tcm_bytes: int, p_tcm: float, pixels: int,
                 out_dir: Path) -> None:
    """Print (and write) the smallest JPEG at the tcm file's PSNR, and how the sizes compare."""
    if jpeg is None:
        print(f"  JPEG 4:2:0    cannot reach {p_tcm:.2f} dB even at quality 100")
        return
    q, jdata, p_jpeg = jpeg
    write_atomic(out_dir / f"sample_jpeg_q{q}.jpg", jdata)
    print(f"  JPEG 4:2:0    {len(jdata):>9,} bytes  {8 * len(jdata) / pixels:6.3f} bpp  PSNR {p_jpeg:5.2f} dB  "
          f"(quality {q}, the smallest JPEG at >= {p_tcm:.2f} dB)")
    if len(jdata) >= tcm_bytes:
        print(f"  JPEG needs {len(jdata) / tcm_bytes:.2f}x the bytes of tcm at the same PSNR "
              f"(tcm saves {100 * (1 - tcm_bytes / len(jdata)):.0f}%)")
    else:
        print(f"  tcm needs {tcm_bytes / len(jdata):.2f}x the bytes of JPEG at the same PSNR")
