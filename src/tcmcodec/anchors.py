"""Classical image codec anchors, measured for real: encode to bytes, decode, measure.

Codecs (key: what runs it):

=============  ==============================================================================================
``jpeg``       JPEG 4:2:0, libjpeg-turbo through Pillow (``quality``, Huffman ``optimize=True``)
``jpeg444``    JPEG 4:4:4, same
``webp``       WebP (lossy, ``method=6``) through Pillow
``avif``       AVIF 4:4:4, libavif + libaom through Pillow's AVIF plugin (``quality``, speed 4, ``tune=psnr``
               instead of libaom's default), decoded by dav1d; falls back to pillow_heif's AVIF, then imagecodecs'
               AVIF (default tune) when Pillow has no AVIF support
``jpeg2000``   JPEG 2000 (OpenJPEG through Pillow): raw codestream, 9/7 irreversible wavelet, colour transform (MCT),
               one quality layer at a target compression ratio (the sweep parameter is the target bpp)
``jpegxl``     JPEG XL (libjxl through imagecodecs), VarDCT ``distance`` sweep, effort 7
``heif``       HEIF/HEVC (libheif + x265 through pillow_heif), 4:4:4, ``quality`` sweep, x265 ``tune=psnr`` (libheif's
               default is ``ssim``), preset slow (libheif's default), decoded by libde265
=============  ==============================================================================================

For every codec and sweep value each image is encoded to an in-memory file (the complete file a user would
store, container included), decoded again, and measured: ``bpp = len(bytes) * 8 / (W * H)``, PSNR and MS-SSIM
on 8-bit RGB (:mod:`tcmcodec.metrics`), encode and decode wall time (one thread per codec call: the images run in
parallel over a process pool instead). Per-point results are means over the images, written as one CompressAI
results JSON per codec (:mod:`tcmcodec.results`), per-image rows included.

Codec libraries are optional: a codec whose library is missing is skipped with a one-line notice on stderr.

Public API: :func:`run`, :func:`measure_codec`, :func:`measure_image`, :func:`available_codecs`,
:func:`codec_versions`, :data:`CODECS`, :func:`encode`, :func:`decode`.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Codec",
    "CODECS",
    "DEFAULT_CODECS",
    "IMAGE_SUFFIXES",
    "available_codecs",
    "codec_versions",
    "encode",
    "decode",
    "list_images",
    "measure_image",
    "measure_codec",
    "run",
]

IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Codec:
    """A codec anchor: ``values`` is the default sweep of ``param``, from low to high quality."""

    key: str
    name: str
    param: str
    values: tuple[float, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)


# Sweeps chosen on Kodak to span about 0.1 to 2 bpp where the codec can (JPEG and WebP cannot go much below
# 0.15-0.25 bpp on Kodak even at their lowest quality).
CODECS: dict[str, Codec] = {
    c.key: c
    for c in (
        Codec("jpeg", "JPEG 4:2:0", "quality", (3, 5, 8, 12, 17, 25, 35, 50, 65, 78, 87, 92),
              {"subsampling": "4:2:0", "optimize": True}),
        Codec("jpeg444", "JPEG 4:4:4", "quality", (3, 5, 8, 12, 17, 25, 35, 50, 65, 78, 87, 92),
              {"subsampling": "4:4:4", "optimize": True}),
        Codec("webp", "WebP", "quality", (0, 5, 10, 20, 30, 45, 60, 75, 85, 90, 95),
              {"method": 6}),
        Codec("avif", "AVIF 4:4:4", "quality", (10, 20, 30, 40, 50, 60, 70, 78, 85, 90),
              {"subsampling": "4:4:4", "speed": 4, "tune": "psnr", "max_threads": 1}),
        Codec("jpeg2000", "JPEG 2000", "target bpp", (0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0),
              {"irreversible": True, "mct": 1, "quality_mode": "rates", "no_jp2": True}),
        Codec("jpegxl", "JPEG XL", "distance", (25.0, 18.0, 12.0, 8.0, 5.5, 4.0, 3.0, 2.2, 1.6, 1.2, 0.9),
              {"effort": 7, "numthreads": 1}),
        Codec("heif", "HEIF (HEVC) 4:4:4", "quality", (8, 14, 20, 26, 32, 38, 44, 50, 56, 62),
              {"chroma": "444", "tune": "psnr", "x265:pools": "none"}),
    )
}
DEFAULT_CODECS = tuple(CODECS)


# ------------------------------------------------------------------------------------------ backends


def _pil_save(img: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pil_open(data: bytes) -> Any:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _avif_backend() -> str:
    """'pillow', 'pillow_heif' or 'imagecodecs' (first with an AV1 encoder), or raise ImportError."""
    try:
        from PIL import features

        if features.check("avif"):
            from PIL import _avif  # type: ignore[attr-defined]

            # e.g. "dav1d [dec]:1.5.3, aom [enc]:3.14.1": needs an AV1 encoder and decoder
            codecs = _avif.codec_versions() if hasattr(_avif, "codec_versions") else "[enc] [dec]"
            if "[enc" in codecs and ("[dec" in codecs or "[enc/dec" in codecs):
                return "pillow"
    except Exception:
        pass
    try:
        import pillow_heif

        if pillow_heif.libheif_info().get("AVIF"):
            return "pillow_heif"
    except ImportError:
        pass
    try:
        import imagecodecs

        if imagecodecs.AVIF.available:
            return "imagecodecs"
    except ImportError:
        pass
    raise ImportError("no AVIF encoder (Pillow's AVIF plugin, pillow_heif with AV1, or imagecodecs with avif)")


def _check_available(key: str) -> None:
    """Raise ImportError with a short reason if ``key``'s library is missing."""
    from PIL import features

    if key in ("jpeg", "jpeg444"):
        if not features.check("jpg"):
            raise ImportError("Pillow was built without JPEG support")
    elif key == "webp":
        if not features.check("webp"):
            raise ImportError("Pillow was built without WebP support")
    elif key == "jpeg2000":
        if not features.check("jpg_2000"):
            raise ImportError("Pillow was built without OpenJPEG (JPEG 2000) support")
    elif key == "avif":
        _avif_backend()
    elif key == "jpegxl":
        try:
            import imagecodecs
        except ImportError:
            raise ImportError("imagecodecs is not installed") from None
        if not imagecodecs.JPEGXL.available:
            raise ImportError("imagecodecs was built without JPEG XL (libjxl)")
    elif key == "heif":
        try:
            import pillow_heif
        except ImportError:
            raise ImportError("pillow_heif is not installed") from None
        if not pillow_heif.libheif_info().get("HEIF"):
            raise ImportError("libheif has no HEVC encoder (x265)")
    else:
        raise KeyError(f"unknown codec {key!r}; known: {', '.join(CODECS)}")


def available_codecs(codecs: Iterable[str] | None = None) -> dict[str, str | None]:
    """``{key: None if usable else reason}`` for the given (default: all) codec keys."""
    out: dict[str, str | None] = {}
    for key in codecs or DEFAULT_CODECS:
        try:
            _check_available(key)
            out[key] = None
        except ImportError as e:
            out[key] = str(e)
    return out


def codec_versions(key: str) -> str:
    """Library versions behind a codec, as a short human-readable string."""
    import PIL
    from PIL import features

    pil = f"Pillow {PIL.__version__}"
    if key in ("jpeg", "jpeg444"):
        turbo = features.version("libjpeg_turbo")
        lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
        return f"{lib} via {pil}"
    if key == "webp":
        return f"libwebp {features.version('webp')} via {pil}"
    if key == "jpeg2000":
        return f"OpenJPEG {features.version('jpg_2000')} via {pil}"
    if key == "avif":
        backend = _avif_backend()
        if backend == "pillow":
            from PIL import _avif  # type: ignore[attr-defined]

            codecs = _avif.codec_versions() if hasattr(_avif, "codec_versions") else ""
            return f"libavif {features.version('avif')} ({codecs}) via {pil}"
        if backend == "pillow_heif":
            import pillow_heif

            info = pillow_heif.libheif_info()
            return f"libheif {info.get('libheif')} (AVIF: {info.get('AVIF')}) via pillow_heif {pillow_heif.__version__}"
        import imagecodecs

        return f"{imagecodecs.avif_version()} via imagecodecs {imagecodecs.__version__}"
    if key == "jpegxl":
        import imagecodecs

        return f"{imagecodecs.jpegxl_version()} via imagecodecs {imagecodecs.__version__}"
    if key == "heif":
        import pillow_heif

        info = pillow_heif.libheif_info()
        dec = ", ".join(str(v) for v in (info.get("decoders") or {}).values())
        return f"libheif {info.get('libheif')} (encoder: {info.get('HEIF')}; decoder: {dec}) via pillow_heif {pillow_heif.__version__}"
    raise KeyError(f"unknown codec {key!r}")


def encode(key: str, img: Any, value: float) -> bytes:
    """Encode an RGB PIL image with codec ``key`` at sweep value ``value``; returns the file's bytes."""
    s = CODECS[key].settings
    if key in ("jpeg", "jpeg444"):
        return _pil_save(img, "JPEG", quality=int(value), subsampling=s["subsampling"], optimize=s["optimize"])
    if key == "webp":
        return _pil_save(img, "WEBP", quality=float(value), method=s["method"])
    if key == "avif":
        backend = _avif_backend()
        if backend == "pillow":
            return _pil_save(img, "AVIF", quality=int(value), subsampling=s["subsampling"], speed=s["speed"],
                             max_threads=s["max_threads"], advanced={"tune": s["tune"]})
        if backend == "pillow_heif":
            import pillow_heif

            buf = io.BytesIO()
            pillow_heif.from_pillow(img).save(buf, format="AVIF", quality=int(value), chroma=444,
                                              enc_params={"speed": str(s["speed"]), "tune": s["tune"]})
            return buf.getvalue()
        import imagecodecs  # no tune option here: libaom's default tune

        return bytes(imagecodecs.avif_encode(np.asarray(img), level=int(value), speed=s["speed"],
                                             pixelformat=imagecodecs.AVIF.PIXEL_FORMAT.YUV444,
                                             numthreads=s["max_threads"]))
    if key == "jpeg2000":
        ratio = 24.0 / float(value)
        return _pil_save(img, "JPEG2000", quality_mode=s["quality_mode"], quality_layers=[ratio],
                         irreversible=s["irreversible"], mct=s["mct"], no_jp2=s["no_jp2"])
    if key == "jpegxl":
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(np.asarray(img), distance=float(value), effort=s["effort"],
                                               numthreads=s["numthreads"]))
    if key == "heif":
        import pillow_heif

        buf = io.BytesIO()
        enc_params = {"tune": s["tune"], "x265:pools": s["x265:pools"]}  # libheif's default x265 preset: slow
        pillow_heif.from_pillow(img).save(buf, format="HEIF", quality=int(value), chroma=int(s["chroma"]),
                                          enc_params=enc_params)
        return buf.getvalue()
    raise KeyError(f"unknown codec {key!r}")


def decode(key: str, data: bytes) -> Any:
    """Decode bytes written by :func:`encode` back to an RGB PIL image."""
    from PIL import Image

    if key in ("jpeg", "jpeg444", "webp", "jpeg2000"):
        im = _pil_open(data)
    elif key == "avif":
        backend = _avif_backend()
        if backend == "pillow":
            im = _pil_open(data)
        elif backend == "pillow_heif":
            import pillow_heif

            im = pillow_heif.open_heif(io.BytesIO(data)).to_pillow()
        else:
            import imagecodecs

            im = Image.fromarray(imagecodecs.avif_decode(data, numthreads=1))
    elif key == "jpegxl":
        import imagecodecs

        im = Image.fromarray(imagecodecs.jpegxl_decode(data, numthreads=1))
    elif key == "heif":
        import pillow_heif

        im = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True).to_pillow()
    else:
        raise KeyError(f"unknown codec {key!r}")
    return im if im.mode == "RGB" else im.convert("RGB")


# --------------------------------------------------------------------------------------- measurement


def _init_worker() -> None:
    """One thread per codec / metric call: parallelism comes from the process pool."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import pillow_heif

        pillow_heif.options.DECODE_THREADS = 1
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _load(path: str | Path, crop: int | tuple[int, int] | None) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    if crop is not None:
        cw, ch = (crop, crop) if isinstance(crop, int) else crop
        w, h = img.size
        cw, ch = min(cw, w), min(ch, h)
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return img


def measure_image(
    key: str,
    image: str | Path,
    values: Sequence[float] | None = None,
    crop: int | tuple[int, int] | None = None,
) -> list[dict]:
    """Encode + decode one image at every sweep value; one row per value.

    Row keys: ``image``, ``point`` (index into ``values``), ``param`` (the value), ``bytes``, ``bpp``,
    ``psnr-rgb``, ``ms-ssim-rgb``, ``encoding_time``, ``decoding_time`` (seconds).
    """
    from . import metrics

    values = CODECS[key].values if values is None else tuple(values)
    img = _load(image, crop)
    ref = np.asarray(img)
    n_pixels = img.size[0] * img.size[1]
    rows = []
    for i, value in enumerate(values):
        t0 = time.perf_counter()
        data = encode(key, img, value)
        t1 = time.perf_counter()
        out = decode(key, data)
        t2 = time.perf_counter()
        rec = np.asarray(out)
        if rec.shape != ref.shape:
            raise RuntimeError(f"{key} at {value}: decoded shape {rec.shape} != original {ref.shape} ({image})")
        rows.append(
            {
                "image": Path(image).name,
                "point": i,
                "param": value,
                "bytes": len(data),
                "bpp": len(data) * 8.0 / n_pixels,
                "psnr-rgb": metrics.psnr(ref, rec),
                "ms-ssim-rgb": metrics.ms_ssim(ref, rec),
                "encoding_time": t1 - t0,
                "decoding_time": t2 - t1,
            }
        )
    return rows


def _task(args: tuple) -> tuple[str, list[dict]]:
    key, image, values, crop = args
    return key, measure_image(key, image, values, crop)


def list_images(dataset_dir: str | Path, max_images: int | None = None) -> list[Path]:
    """Image files (PNG, PPM, BMP, TIFF) of a folder, sorted by name."""
    d = Path(dataset_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {d}")
    images = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {d}")
    return images[:max_images] if max_images else images


def _notice(msg: str) -> None:
    print(f"tcm anchors: {msg}", file=sys.stderr, flush=True)


def _run_tasks(
    tasks: list[tuple], workers: int, progress: Callable[[str], None] | None
) -> list[tuple[str, list[dict]]]:
    done: list[tuple[str, list[dict]]] = []
    if workers <= 1:
        restore = _single_thread_decoders()
        try:
            for i, t in enumerate(tasks, 1):
                done.append(_task(t))
                if progress:
                    progress(f"[{i}/{len(tasks)}] {t[0]} {Path(t[1]).name}")
        finally:
            restore()
        return done
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = {pool.submit(_task, t): t for t in tasks}
        for i, fut in enumerate(as_completed(futures), 1):
            done.append(fut.result())
            if progress:
                t = futures[fut]
                progress(f"[{i}/{len(tasks)}] {t[0]} {Path(t[1]).name}")
    return done


def _single_thread_decoders() -> Callable[[], None]:
    """In-process runs: one libheif decoding thread (as in the workers); returns a function restoring it."""
    try:
        import pillow_heif
    except ImportError:
        return lambda: None
    before = pillow_heif.options.DECODE_THREADS
    pillow_heif.options.DECODE_THREADS = 1

    def restore() -> None:
        pillow_heif.options.DECODE_THREADS = before

    return restore


def _description(key: str, n_images: int, dataset: str, crop: Any, workers: int) -> str:
    c = CODECS[key]
    settings = ", ".join(f"{k}={v}" for k, v in c.settings.items())
    extra = f", center crop {crop}" if crop else ""
    return (
        f"{c.name}: {codec_versions(key)}. Sweep over {c.param} ({settings}). Real encode to bytes and decode; "
        f"bpp = file bytes * 8 / pixels; PSNR / MS-SSIM on 8-bit RGB; mean over {n_images} images of {dataset}{extra}. "
        f"Times: wall seconds per image, one thread per call, {workers} worker process(es) on "
        f"{platform.machine()} {os.cpu_count()}-CPU {platform.system()}, Python {platform.python_version()}."
    )


def measure_codec(
    key: str,
    images: Sequence[str | Path],
    values: Sequence[float] | None = None,
    *,
    workers: int = 2,
    crop: int | tuple[int, int] | None = None,
    dataset: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure one codec over ``images``: a CompressAI results dict (not written)."""
    out = _measure_many([key], images, {key: values} if values is not None else None,
                        workers=workers, crop=crop, dataset=dataset, progress=progress)
    return out[key]


def _measure_many(
    keys: Sequence[str],
    images: Sequence[str | Path],
    values: Mapping[str, Sequence[float]] | None,
    *,
    workers: int,
    crop: Any,
    dataset: str | None,
    progress: Callable[[str], None] | None,
) -> dict[str, dict]:
    from . import results

    images = [Path(p) for p in images]
    if not images:
        raise ValueError("no images to measure")
    sweeps = {k: tuple((values or {}).get(k) or CODECS[k].values) for k in keys}
    tasks = [(k, str(p), sweeps[k], crop) for k in keys for p in images]
    rows: dict[str, list[dict]] = {k: [] for k in keys}
    for k, r in _run_tasks(tasks, workers, progress):
        rows[k].extend(r)
    dataset = dataset or images[0].parent.name
    out = {}
    for k in keys:
        rs = sorted(rows[k], key=lambda r: (r["image"], r["point"]))
        c = CODECS[k]
        settings = {"codec": k, "parameter": c.param, "values": list(sweeps[k]), **{str(a): b for a, b in c.settings.items()},
                    "library": codec_versions(k), "images": len(images), "dataset": dataset,
                    "crop": crop, "workers": workers}
        out[k] = results.make_results(c.name, _description(k, len(images), dataset, crop, workers), rs,
                                      settings=settings)
    return out


def run(
    dataset_dir: str | Path,
    out_dir: str | Path,
    codecs: Iterable[str] | None = None,
    workers: int = 2,
    *,
    qualities: Mapping[str, Sequence[float]] | None = None,
    crop: int | tuple[int, int] | None = None,
    max_images: int | None = None,
    progress: bool | Callable[[str], None] = False,
) -> list[Path]:
    """Measure the anchors on every image of ``dataset_dir``; write ``out_dir/<codec>.json`` per codec.

    ``codecs``: keys of :data:`CODECS` (default: all). Unknown keys raise ``ValueError``; codecs whose library
    is missing are skipped with a one-line notice on stderr. ``workers``: processes (images and codecs run in
    parallel; 1 = in this process). ``qualities``: per-codec sweep overrides ``{key: [values]}``. ``crop``:
    center crop (size or (w, h)) of every image, for quick runs. ``progress``: True to print one line per
    finished (codec, image) on stderr, or a callable taking that line. Returns the written paths.

    With ``workers > 1`` the pool uses the ``spawn`` start method (safe with torch loaded in the parent): a
    calling script needs the usual ``if __name__ == "__main__":`` guard.
    """
    keys = list(codecs) if codecs is not None else list(DEFAULT_CODECS)
    unknown = [k for k in keys if k not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)}; known: {', '.join(CODECS)}")
    usable = []
    for key, reason in available_codecs(keys).items():
        if reason is None:
            usable.append(key)
        else:
            _notice(f"skipping {key}: {reason}")
    if not usable:
        return []
    images = list_images(dataset_dir, max_images)
    report = _notice if progress is True else (progress or None)
    from . import results

    measured = _measure_many(usable, images, qualities, workers=max(1, int(workers)), crop=crop,
                             dataset=Path(dataset_dir).name, progress=report)
    out_dir = Path(out_dir)
    return [results.write_results(out_dir / f"{k}.json", measured[k]) for k in usable]
