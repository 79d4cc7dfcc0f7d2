"""Speed and memory of the whole codec (``tcmcodec.codec``) at several image sizes.

Prints one JSON object (see ``benchmarks/README.md`` for every field):

- per size: encode and decode wall time (median of ``--repeats`` runs) of ``Codec.compress`` /
  ``Codec.decompress`` on a real photo (Kodak crops / tiles, not noise), file size and bpp, whether the
  decoded image is bit-exact with the encoder's reconstruction, and the peak resident memory
  (``ru_maxrss``) of a fresh process that ran only that size (so peaks of different sizes do not mix;
  with ``--device cuda`` also ``torch.cuda.max_memory_allocated``). A size that fails (out of memory,
  killed, time limit) gets an ``error`` and the run goes on.
- ``--baseline``: JPEG (Pillow / libjpeg-turbo, quality 90, 4:2:0) encode / decode of the same image,
  median of the same number of runs, and the model / JPEG time ratios.
- the entropy coder's symbols/s, from ``benchmarks/bench_coder.py`` (run as is, in a subprocess).
- machine info: CPUs, torch version and threads, load average before and after, memory.

Usage::

    python benchmarks/bench_codec.py --model tcm-s --baseline            # random weights (seed 0)
    python benchmarks/bench_codec.py --checkpoint run/best.safetensors --sizes 256x256,768x512
    python benchmarks/bench_codec.py --device cuda --sizes 3840x2160 -o bench.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = "256x256,768x512,1920x1080,3840x2160"
DEFAULT_KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------- helpers


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return w, h


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [parse_size(s.strip()) for s in text.split(",") if s.strip()]


def make_image(width: int, height: int, kodak_dir: Path):
    """A real photo of ``width`` x ``height``: a center crop of kodim23 when it fits (768x512), else a
    grid of distinct Kodak images (portrait ones rotated to landscape) cropped to the size."""
    from PIL import Image

    files = sorted(kodak_dir.glob("kodim*.png"))
    if not files:
        raise SystemExit(f"no Kodak images in {kodak_dir} (use --kodak DIR)")

    def load(path: Path) -> Image.Image:
        with Image.open(path) as im:
            img = im.convert("RGB")
        return img.transpose(Image.Transpose.ROTATE_90) if img.height > img.width else img

    first = kodak_dir / "kodim23.png"
    base = load(first if first.exists() else files[0])
    if width <= base.width and height <= base.height:
        left, top = (base.width - width) // 2, (base.height - height) // 2
        return base.crop((left, top, left + width, top + height))
    tw, th = base.size  # 768 x 512
    cols, rows = -(-width // tw), -(-height // th)
    canvas = Image.new("RGB", (cols * tw, rows * th))
    order = [first] + [f for f in files if f != first] if first.exists() else files
    for i in range(rows * cols):
        tile = load(order[i % len(order)])
        if tile.size != (tw, th):
            tile = tile.resize((tw, th))
        canvas.paste(tile, ((i % cols) * tw, (i // cols) * th))
    left, top = (canvas.width - width) // 2, (canvas.height - height) // 2
    return canvas.crop((left, top, left + width, top + height))


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def _mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def _meminfo() -> dict[str, float]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                if key in ("MemTotal", "MemAvailable"):
                    out[key] = round(int(value.split()[0]) / 2**20, 1)  # kB -> GiB
    except OSError:
        pass
    return {"mem_total_gib": out.get("MemTotal"), "mem_available_gib": out.get("MemAvailable")}


def machine_info(threads: int | None) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        **_meminfo(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------------------- JPEG baseline


def bench_jpeg(img, repeats: int) -> dict:
    """Pillow JPEG q=90 (4:2:0, libjpeg-turbo) encode / decode times of ``img``, median of ``repeats``."""
    from PIL import Image, features

    enc, dec, data = [], [], b""
    for _ in range(repeats):
        t0 = time.perf_counter()
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2)
        data = buf.getvalue()
        t1 = time.perf_counter()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    return {
        "codec": f"JPEG q{JPEG_QUALITY} 4:2:0, Pillow {__import__('PIL').__version__}, "
                 f"libjpeg-turbo {features.version('libjpeg_turbo') or '?'}",
        "encode_s": _median(enc),
        "decode_s": _median(dec),
        "bytes": len(data),
        "bpp": round(len(data) * 8 / (img.width * img.height), 4),
    }


# --------------------------------------------------------------------------------------- one size (worker)


def worker(args: argparse.Namespace) -> dict:
    """Runs in a fresh process: load the model, code one size ``--repeats`` times, report."""
    import torch

    from tcmcodec import codec, zoo

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    width, height = args.worker
    out: dict = {"size": f"{width}x{height}", "pixels": width * height}
    cuda = str(args.device).startswith("cuda")
    img = make_image(width, height, Path(args.kodak))

    t0 = time.perf_counter()
    if args.checkpoint is not None:
        c = codec.Codec(args.model, args.checkpoint, args.device, tile=args.tile)
    else:
        torch.manual_seed(0)
        c = codec.Codec(zoo.create_model(args.model or "tcm-s", device=args.device), tile=args.tile)
    quality = args.quality if c.model.config.num_gains else None
    out["model"], out["quality"], out["torch_threads"] = c.name, quality, torch.get_num_threads()
    out["model_load_s"] = round(time.perf_counter() - t0, 3)
    cfg = c.model.config
    ph, pw = -(-height // 64) * 64, -(-width // 64) * 64
    out["symbols"] = cfg.M * (ph // 16) * (pw // 16) + cfg.z_channels * (ph // 64) * (pw // 64)
    c.decompress(c.compress(img.crop((0, 0, min(64, width), min(64, height))), quality))  # tables, allocator
    out["rss_after_load_mib"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    from tcmcodec.evaluation.measure import TcmCoder, measure

    enc, dec, data, exact = [], [], b"", True
    for i in range(args.repeats):
        m = measure(TcmCoder(c), img, quality, ms_ssim=False)
        data, exact = m.data, exact and bool(m.exact)
        enc.append(m.encoding_time)
        dec.append(m.decoding_time)
        if (m.encoding_time + m.decoding_time) > args.max_run_seconds and i + 1 < args.repeats:
            out["note"] = (f"stopped after {i + 1} run(s): one encode + decode took "
                           f"{m.encoding_time + m.decoding_time:.0f} s "
                           f"(> --max-run-seconds {args.max_run_seconds:g})")
            break
    out.update({
        "repeats": len(enc),
        "encode_s": _median(enc),
        "decode_s": _median(dec),
        "encode_s_all": [round(t, 4) for t in enc],
        "decode_s_all": [round(t, 4) for t in dec],
        "encode_mpix_per_s": round(width * height / 1e6 / statistics.median(enc), 4),
        "decode_mpix_per_s": round(width * height / 1e6 / statistics.median(dec), 4),
        "bytes": len(data),
        "bpp": round(len(data) * 8 / (width * height), 4),
        "exact": bool(exact),
        "tiling": _tiling_of(data),
        "peak_rss_mib": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
    })
    if cuda:
        out["cuda_peak_allocated_mib"] = _mib(torch.cuda.max_memory_allocated())
        out["cuda_peak_reserved_mib"] = _mib(torch.cuda.max_memory_reserved())
    return out


def _tiling_of(data: bytes) -> str:
    """``"untiled"`` or ``"tile T px, overlap O px"`` as recorded in the file."""
    from tcmcodec.codec import container

    streams = container.unpack(data, max_pixels=None)[1]
    tiles = streams.get("tiles")
    return f"tile {64 * tiles[0]} px, overlap {64 * tiles[1]} px" if tiles else "untiled"


def run_size(size: tuple[int, int], args: argparse.Namespace) -> dict:
    """One size in a fresh subprocess; an ``error`` entry when it fails."""
    w, h = size
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", f"{w}x{h}",
           "--repeats", str(args.repeats), "--device", args.device, "--kodak", str(args.kodak),
           "--max-run-seconds", str(args.max_run_seconds)]
    if args.model is not None:
        cmd += ["--model", args.model]
    if args.checkpoint is not None:
        cmd += ["--checkpoint", str(args.checkpoint)]
    if args.quality is not None:
        cmd += ["--quality", str(args.quality)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.tile is not None:
        cmd += ["--tile", str(args.tile)]
    if args.mem_limit_gib:
        cmd += ["--mem-limit-gib", str(args.mem_limit_gib)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.size_timeout)
    except subprocess.TimeoutExpired:
        return {"size": f"{w}x{h}", "error": f"time limit: still running after {args.size_timeout} s (--size-timeout)"}
    wall = round(time.perf_counter() - t0, 1)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        entry = json.loads(lines[-1])
    else:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        if proc.returncode < 0:
            reason = f"killed by signal {-proc.returncode}" + (" (probably out of memory)" if proc.returncode == -9 else "")
        else:
            reason = f"exit status {proc.returncode}"
        entry = {"size": f"{w}x{h}", "error": f"{reason}: {tail}" if tail else reason}
    entry["process_wall_s"] = wall
    return entry


# --------------------------------------------------------------------------------------- entropy coder


def bench_entropy_coder(symbols: int, runs: int) -> dict:
    """``benchmarks/bench_coder.py`` (calibrated workload) run as is; its JSON, or an error."""
    cmd = [sys.executable, str(HERE / "bench_coder.py"), "--symbols", str(symbols), "--runs", str(runs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": "bench_coder.py did not finish in 900 s"}
    if proc.returncode != 0:
        return {"error": " | ".join(proc.stderr.strip().splitlines()[-3:]) or f"exit status {proc.returncode}"}
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="preset (default: tcm-s, or what --checkpoint holds); random weights "
                                   "(seed 0) unless --checkpoint")
    p.add_argument("--checkpoint", help="weights file (with --model: must have that architecture)")
    p.add_argument("--quality", type=float, default=4.0,
                   help="quality of continuous-rate models (default: 4; ignored by fixed-rate ones)")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                   help=f"comma-separated WxH (default: {DEFAULT_SIZES})")
    p.add_argument("--repeats", type=int, default=3, help="runs per size; medians are reported (default: 3)")
    p.add_argument("--max-run-seconds", type=float, default=300.0,
                   help="stop repeating a size once one encode + decode takes longer (default: 300)")
    p.add_argument("--size-timeout", type=float, default=3600.0,
                   help="give up on a size after this many seconds (default: 3600)")
    p.add_argument("--mem-limit-gib", type=float, default=None,
                   help="address-space limit of each size's process (RLIMIT_AS), so running out of memory "
                        "fails that size instead of waking the OOM killer (default: none)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--tile", type=int, help="tile side in pixels (0: untiled; default: the codec's automatic tiling)")
    p.add_argument("--baseline", action="store_true", help="also time JPEG q90 (Pillow) and report ratios")
    p.add_argument("--coder-symbols", type=int, default=1_000_000,
                   help="symbols for the entropy-coder benchmark (default: 1000000; 0 = skip)")
    p.add_argument("--kodak", default=str(DEFAULT_KODAK), help=f"Kodak folder (default: {DEFAULT_KODAK})")
    p.add_argument("-o", "--output", help="also write the JSON to this file")
    p.add_argument("--worker", type=parse_size, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    if args.worker is not None:
        if args.mem_limit_gib:
            limit = int(args.mem_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            print(json.dumps(worker(args)))
        except (MemoryError, RuntimeError) as e:  # torch reports allocation failures as RuntimeError
            msg = " ".join(str(e).split())[:300] or type(e).__name__
            print(json.dumps({"size": "x".join(map(str, args.worker)), "error": f"{type(e).__name__}: {msg}"}))
        return 0

    import torch  # noqa: F401 - machine info

    report: dict = {
        "benchmark": "bench_codec",
        "model": args.model or ("tcm-s" if args.checkpoint is None else None),
        "weights": args.checkpoint or "random (seed 0)",
        "device": args.device,
        "repeats": args.repeats,
        "machine": machine_info(args.threads),
        "sizes": [],
    }
    if args.model is not None:
        from tcmcodec import zoo

        zoo.get_preset(args.model)  # fail early on a bad name
    for size in args.sizes:
        print(f"bench_codec: {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
        jpeg = None
        if args.baseline:
            jpeg = bench_jpeg(make_image(*size, Path(args.kodak)), args.repeats)
        entry = run_size(size, args)
        if jpeg is not None:
            entry["jpeg"] = jpeg
            if "error" not in entry:
                entry["ratio_vs_jpeg"] = {
                    "encode": round(entry["encode_s"] / max(jpeg["encode_s"], 1e-9), 1),
                    "decode": round(entry["decode_s"] / max(jpeg["decode_s"], 1e-9), 1),
                }
        report["sizes"].append(entry)
        print(f"bench_codec: {json.dumps(entry)}", file=sys.stderr, flush=True)
    if args.coder_symbols > 0:
        report["entropy_coder"] = bench_entropy_coder(args.coder_symbols, max(args.repeats, 1))
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report["machine"].update({k + "_end": v for k, v in _meminfo().items() if k == "mem_available_gib"})
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
