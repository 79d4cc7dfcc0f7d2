"""The ``tcm anchors``, ``tcm bdrate`` and ``tcm plot`` subcommands: thin wrappers of
:mod:`tcmcodec.evaluation.anchors`, :mod:`tcmcodec.evaluation.bdrate` and :mod:`tcmcodec.evaluation.plot`.

Registered on :mod:`tcmcodec.cli` with its :func:`~tcmcodec.cli.command` decorator (``cli`` imports this
module). The wrapped modules (and their optional extras) load inside the commands, so building the parser
stays cheap.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .options import add_model_args, model_arg, write_atomic
from .registry import CLIError, UsageError, command


def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder of images (e.g. ../shared/data/kodak)")
    add_model_args(p, "tcm-xs")
    p.add_argument("--quality", metavar="SPEC",
                   help="qualities of a continuous-rate model: 1,2,3 or 1-8 or 1:8:0.5 (default: every level); "
                        "not for fixed-rate models")
    p.add_argument("--per-image", action="store_true", help="also write one row per image and quality")
    p.add_argument("-o", "--output", metavar="RESULTS.json", help="write the results JSON here (default: print it)")
    p.add_argument("--estimate", action="store_true",
                   help="rate from the model's likelihoods instead of real coding (labelled 'estimated')")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


@command("eval", "evaluate a model on an image folder with real .tcm files (CompressAI JSON)", _configure_eval)
def cmd_eval(args: argparse.Namespace) -> int:
    """Compress, decode and measure every image at every quality (tcmcodec.evaluation.evaluate).
    Exit status 1 if any decoded image differed from the encoder's reconstruction."""
    from tcmcodec.evaluation import results
    from tcmcodec.evaluation.evaluate import evaluate
    from tcmcodec.evaluation.metrics import require_msssim

    require_msssim()
    data = evaluate(args.dataset, model_arg(args, "tcm-xs"), args.checkpoint, args.quality, args.device,
                    per_image=args.per_image, estimate=args.estimate, progress=not args.quiet)
    if args.output:
        path = results.write_results(args.output, data)
        res = data["results"]
        for q, bpp, p, t_e, t_d in zip(data["settings"]["values"], res["bpp"], res["psnr-rgb"],
                                       res["encoding_time"], res["decoding_time"]):
            label = "fixed" if q is None else f"q{q:g}"
            print(f"{data['name']} {label}: {bpp:.4f} bpp, {p:.2f} dB PSNR, encode {t_e:.2f} s, decode {t_d:.2f} s")
        print(path)
    else:
        results.validate(data, strict=True)
        print(json.dumps(results.clean(data), indent=2, allow_nan=False))
    if data.get("mismatches"):
        raise CLIError(f"{data['mismatches']} decoded image(s) differ from the encoder's reconstruction")
    return 0


__all__ = ["cmd_eval", "cmd_anchors", "cmd_bdrate", "cmd_plot"]


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
    from tcmcodec.evaluation import anchors
    from tcmcodec.evaluation.metrics import require_msssim

    require_msssim()  # before any codec runs (ImportError: one line naming the extra)
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



def _configure_bdrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("anchor", metavar="ANCHOR.json", help="results of the reference codec")
    p.add_argument("tests", nargs="+", metavar="TEST.json", help="results to compare with the anchor")
    from tcmcodec.evaluation import bdrate  # numpy: only when the parser is built

    p.add_argument("--method", choices=bdrate.METHODS, default="pchip", help="interpolation (default: pchip)")
    p.add_argument("--metric", choices=bdrate.METRICS, default="psnr-rgb", help="quality axis (default: psnr-rgb)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("bdrate", "Bjøntegaard delta rate / PSNR between results files", _configure_bdrate)
def cmd_bdrate(args: argparse.Namespace) -> int:
    """BD-rate (percent, negative = fewer bits) and BD-PSNR of each test curve against the anchor."""
    from tcmcodec.evaluation import bdrate
    from tcmcodec.evaluation import results

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
    from tcmcodec.evaluation import plot

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
        write_atomic(out, tmp_out.read_bytes())
    print(out)
    return 0
