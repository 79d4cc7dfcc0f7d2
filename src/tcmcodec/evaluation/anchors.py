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
on 8-bit RGB (:mod:`tcmcodec.evaluation.metrics`), encode and decode wall time (one thread per codec call: the images run in
parallel over a process pool instead). Per-point results are means over the images, written as one CompressAI
results JSON per codec (:mod:`tcmcodec.evaluation.results`), per-image rows included.

Codec libraries are optional: a codec whose library is missing is skipped with a one-line notice on stderr.

Public API: :func:`run`, :func:`measure_codec`, :func:`measure_image`; re-exported from
:mod:`tcmcodec.evaluation.codecs` (the codec backends): :func:`available_codecs`, :func:`codec_versions`,
:data:`CODECS`, :func:`encode`, :func:`decode`; from :mod:`tcmcodec.codec.files`: :func:`list_images`.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


from tcmcodec.evaluation.codecs import (
    CODECS,
    DEFAULT_CODECS,
    AnchorCoder,
    AnchorCodec,
    available_codecs,
    codec_versions,
    decode,
    encode,
)
from tcmcodec.codec.files import IMAGE_SUFFIXES, list_images

__all__ = [
    "AnchorCodec",
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
    """The image as RGB, center-cropped to ``crop`` (one side or (width, height)) when given."""
    from tcmcodec.codec.image import load_image

    img = load_image(path).convert("RGB")
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
    from tcmcodec.evaluation.measure import measure

    values = CODECS[key].values if values is None else tuple(values)
    img = _load(image, crop)
    coder = AnchorCoder(key)
    rows = []
    for i, value in enumerate(values):
        try:
            m = measure(coder, img, value)
        except ValueError as e:  # decoded size differs: a broken codec build, not a bad image
            raise RuntimeError(f"{key} at {value}: {e} ({image})") from None
        rows.append({"image": Path(image).name, "point": i, "param": value, **m.row()})
    return rows


def _task(args: tuple) -> tuple[str, list[dict]]:
    key, image, values, crop = args
    return key, measure_image(key, image, values, crop)


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
    from tcmcodec.evaluation import results

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
    from tcmcodec.evaluation import results

    measured = _measure_many(usable, images, qualities, workers=max(1, int(workers)), crop=crop,
                             dataset=Path(dataset_dir).name, progress=report)
    out_dir = Path(out_dir)
    return [results.write_results(out_dir / f"{k}.json", measured[k]) for k in usable]
