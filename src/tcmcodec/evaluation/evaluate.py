"""Rate-distortion evaluation of a TCM model on a folder of images: the engine of ``tcm eval``.

::

    from tcmcodec.evaluation.evaluate import evaluate
    from tcmcodec import results

    data = evaluate("../shared/data/kodak", "tcm-xs", checkpoint="run/best.safetensors", qualities=[1, 4, 8])
    results.write_results("results/tcm-xs.json", data)

For every image and quality the image is coded for real (:mod:`tcmcodec.codec`): the complete ``.tcm``
file is produced (``bpp = len(file) * 8 / (W * H)``, header included), decoded again with the codec's
decoder, and the decoded image is compared with the encoder-side reconstruction (a *mismatch* is a
decoded image that differs from it by any bit: the count is reported and must be 0). PSNR and MS-SSIM
are measured on 8-bit RGB (:mod:`tcmcodec.evaluation.metrics`), times are wall seconds of one ``compress`` /
``decompress`` call (the model is loaded once, and warmed up on a small crop, outside the timings; the
codec's ``compress`` also computes the encoder-side reconstruction, so ``encoding_time`` includes one
synthesis transform). Points are means over the images (:func:`tcmcodec.evaluation.results.make_results`), sorted
by bpp; ``settings["values"]`` gives the quality of each point in that order.

``estimate=True`` skips the entropy coder: the rate is the likelihood bits of the model's ``forward``
in eval mode (rounding; no header, no coding overhead), the reconstruction is the forward's
``x_hat``; ``encoding_time`` is then the forward pass and ``decoding_time`` 0. The result's ``name``
and ``description`` say "estimated".

Output: a CompressAI results dict (:mod:`tcmcodec.evaluation.results`) with ``name``, ``description``, ``results``
(``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``, ``ms-ssim-rgb-db``, ``encoding_time``, ``decoding_time``),
``settings`` and the top-level ``mismatches`` count (``None`` when estimating); with ``per_image=True``
also ``per_image`` rows (``image``, ``point``, ``param`` = quality, ``width``, ``height``, ``bytes``,
``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``, ``encoding_time``, ``decoding_time``, ``exact``).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from tcmcodec.codec.files import IMAGE_SUFFIXES, list_images

if TYPE_CHECKING:  # torch is imported when a model is needed
    from tcmcodec.models import TCM

__all__ = ["evaluate", "parse_qualities", "list_images", "IMAGE_SUFFIXES"]

#: Image files picked up in the dataset folder.

QualitySpec = Union[str, float, int, Sequence[float], None]

# Side of the crop used to warm the model up (coding tables, allocator) before the timed runs.
_WARMUP_SIDE = 64


# --------------------------------------------------------------------------------------- arguments


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad quality spec {spec!r}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"bad quality spec {spec!r}: {text.strip()!r} is not a finite number")
    return value


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _steps(start: float, stop: float, step: float, spec: str) -> list[float]:
    if step <= 0:
        raise ValueError(f"bad quality spec {spec!r}: the step must be > 0")
    if stop < start:
        raise ValueError(f"bad quality spec {spec!r}: the range {start:g}..{stop:g} is empty")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > 1000:
        raise ValueError(f"bad quality spec {spec!r}: {count} qualities is too many (1000 at most)")
    return [round(start + i * step, 9) for i in range(count)]


def parse_qualities(spec: QualitySpec, levels: int | None = None) -> list[float] | None:
    """Parse a quality list: ``"1,2,3"``, ``"1-8"`` (integer steps, inclusive), ``"1:8:0.5"``
    (start:stop:step, inclusive), or a mix such as ``"1,2.5,4-6"``; also a number or a sequence of numbers.

    Args:
        spec: the spec; None means "the default" (returned as None).
        levels: the model's quality levels L; when given, every quality must lie in [1, L]
            (``0`` = a fixed-rate model, which takes no quality).

    Returns:
        The qualities in the order given, duplicates removed; None for ``spec=None``.

    Raises:
        ValueError: a malformed spec, an empty list, or a quality out of range.
    """
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise ValueError(f"bad quality spec {spec!r}")
    if isinstance(spec, (int, float, np.integer, np.floating)):
        values = [_number(str(spec), str(spec))]
    elif isinstance(spec, str):
        values = []
        text = spec.strip()
        if not text:
            raise ValueError("bad quality spec '': expected e.g. 1,2,3 or 1-8 or 1:8:0.5")
        for item in text.split(","):
            item = item.strip()
            if not item:
                raise ValueError(f"bad quality spec {spec!r}: empty item")
            if ":" in item:
                parts = item.split(":")
                if len(parts) != 3:
                    raise ValueError(f"bad quality spec {spec!r}: {item!r} must be start:stop:step")
                values += _steps(*(_number(p, spec) for p in parts), spec=spec)
            elif "-" in item[1:] and not _is_float(item):
                cut = item.index("-", 1)
                values += _steps(_number(item[:cut], spec), _number(item[cut + 1:], spec), 1.0, spec)
            else:
                values.append(_number(item, spec))
    else:
        try:
            values = [_number(str(v), str(spec)) for v in spec]
        except TypeError:
            raise ValueError(f"bad quality spec {spec!r}") from None
        if not values:
            raise ValueError("bad quality spec: empty list")
    out: list[float] = []
    for v in values:
        v = float(v)
        if v not in out:
            out.append(v)
    if levels is not None:
        if levels == 0:
            raise ValueError("this model has a fixed rate: it takes no quality (its checkpoint sets the rate)")
        bad = [v for v in out if not 1.0 <= v <= levels]
        if bad:
            raise ValueError(f"quality must be in [1, {levels}], got {', '.join(f'{v:g}' for v in bad)}")
    return out


# --------------------------------------------------------------------------------------- measuring


def _measure_real(c: Any, img: Any, ref: np.ndarray, quality: float | None) -> dict[str, Any]:
    from tcmcodec.evaluation.measure import TcmCoder, measure

    return measure(TcmCoder(c), img, quality, reference=ref).row()


def _measure_estimate(model: "TCM", ref: np.ndarray, quality: float | None) -> dict[str, Any]:
    import torch

    from tcmcodec.evaluation.metrics import ms_ssim, psnr

    h, w = ref.shape[:2]
    from tcmcodec.codec.image import pad_image

    h, w = ref.shape[:2]
    m = model.pad_multiple
    padded = pad_image(ref, -(-h // m) * m, -(-w // m) * m, "replicate")
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = torch.from_numpy(np.array(padded))  # a writable copy: ``padded`` may be read-only
        x = x.to(device).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        out = model(x, quality if model.config.num_gains else None)  # published fixed-rate: chosen by quality
        bits = sum(float(-torch.log2(lik.double()).sum()) for lik in out["likelihoods"].values())
        x_hat = out["x_hat"][0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
        rec = np.ascontiguousarray(x_hat.permute(1, 2, 0).cpu().numpy())
    t1 = time.perf_counter()
    return {
        "bits": bits,
        "bpp": bits / (w * h),
        "psnr-rgb": psnr(ref, rec),
        "ms-ssim-rgb": ms_ssim(ref, rec),
        "encoding_time": t1 - t0,
        "decoding_time": 0.0,
    }


def _warm_up(c: Any, ref: np.ndarray, quality: float | None, estimate: bool) -> None:
    """Build the coding tables and warm the allocator on a small crop (not measured)."""
    crop = np.ascontiguousarray(ref[:_WARMUP_SIDE, :_WARMUP_SIDE])
    if estimate:
        _measure_estimate(c.model_for(quality), crop, quality)
    else:
        c.decompress(c.compress(crop, quality))


def _measure_all(
    c: Any, images: Sequence[Path], points: Sequence[float | None], run_q: Sequence[float | None],
    estimate: bool, progress: bool,
) -> tuple[list[dict[str, Any]], int]:
    from tqdm import tqdm

    from tcmcodec.codec.image import load_image, prepare_image

    rows: list[dict[str, Any]] = []
    mismatches = 0
    bar = tqdm(images, unit="image", file=sys.stderr, dynamic_ncols=True, disable=not progress,
               desc=f"{c.name}{' (estimate)' if estimate else ''}", leave=False)
    try:
        for n, path in enumerate(bar):
            img = load_image(path)
            ref = prepare_image(img)[0]
            if n == 0:
                _warm_up(c, ref, run_q[0], estimate)
            for i, (q, rq) in enumerate(zip(points, run_q)):
                m = _measure_estimate(c.model_for(rq), ref, rq) if estimate else _measure_real(c, img, ref, rq)
                if not estimate and not m["exact"]:
                    mismatches += 1
                rows.append({"image": path.name, "point": i, "param": q, "width": ref.shape[1],
                             "height": ref.shape[0], **m})
            if mismatches:
                bar.set_postfix_str(f"{mismatches} mismatches")
    finally:
        bar.close()
    return rows, mismatches


def _describe(model_name: str, weights: str, estimate: bool, n_images: int, dataset: str, device: str) -> str:
    import torch

    if estimate:
        how = ("ESTIMATED rate: likelihood bits of the model's forward pass in eval mode (rounding), no entropy "
               "coding, no file header; bpp = bits / (W * H); PSNR / MS-SSIM of the forward's reconstruction; "
               "encoding_time = forward pass, decoding_time = 0")
    else:
        how = ("Real coding: complete .tcm files (bpp = file bytes * 8 / (W * H), header included), decoded with "
               "tcmcodec.codec and checked bit-exact against the encoder-side reconstruction; PSNR / MS-SSIM on "
               "8-bit RGB; times = wall seconds per image of compress (incl. encoder-side reconstruction) and "
               "decompress, model loaded once")
    return (f"TCM {model_name} ({weights}), tcmcodec. {how}. Mean over {n_images} images of {dataset}. "
            f"Device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
            f"{platform.machine()} {os.cpu_count()}-CPU {platform.system()}, Python {platform.python_version()}.")


def _check_dataset(dataset_dir: str | os.PathLike) -> list[Path]:
    """The images of the folder; ValueError if there are none, one is unreadable, or all are too small."""
    from PIL import Image

    from tcmcodec.evaluation.metrics import MS_SSIM_MIN_SIDE

    images = list_images(dataset_dir)
    sizes = []
    for p in images:
        try:
            with Image.open(p) as im:
                sizes.append(im.size)
        except OSError as e:
            raise ValueError(f"{p}: cannot read the image ({e})") from None
    if not any(min(s) >= MS_SSIM_MIN_SIDE for s in sizes):
        raise ValueError(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} pixels; "
                         f"every image of {dataset_dir} is smaller")
    return images


def _weights_label(c: Any, model: Any, checkpoint: str | os.PathLike | None) -> str:
    from tcmcodec import zoo

    if checkpoint is not None:
        return f"weights {Path(checkpoint).name}"
    if isinstance(model, str):
        return "the authors' published checkpoints" if zoo.get_preset(model).published else "shipped weights"
    return f"the given model instance, weights id {zoo.weights_id(c.model).hex()}"


def _settings(
    c: Any, checkpoint: Any, weights: str, estimate: bool, levels: int, rows: list[dict], n_images: int,
    dataset: str, device: str, mismatches: int,
) -> dict[str, Any]:
    """The ``settings`` entry of the results file."""
    from tcmcodec.evaluation import results

    return {
        "codec": "tcm",
        "model": c.name,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "weights": weights,
        "mode": "estimate" if estimate else "real",
        "parameter": "quality" if levels else None,
        "values": [a["param"] for a in results.average_rows(rows)],  # make_results sorts the points by bpp
        "images": n_images,
        "dataset": dataset,
        "device": str(device),
        "mismatches": None if estimate else mismatches,
    }


def evaluate(
    dataset_dir: str | os.PathLike,
    model: "str | TCM | None" = "tcm-xs",
    checkpoint: str | os.PathLike | None = None,
    qualities: QualitySpec = None,
    device: str = "cpu",
    per_image: bool = False,
    estimate: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate a model on every image of a folder; return a CompressAI results dict (not written).

    Args:
        dataset_dir: folder of images (PNG, PPM, BMP, TIFF, JPEG, WebP; not recursive).
        model: a preset name (loaded with its shipped weights, or with ``checkpoint``), a ``TCM``
            instance (used as is), or None to take the architecture from ``checkpoint``.
        checkpoint: weights file (see :func:`tcmcodec.zoo.load_checkpoint`).
        qualities: continuous-rate models: a spec (see :func:`parse_qualities`) or numbers in [1, L];
            default every integer level 1..L. Must be None for fixed-rate models, which are
            evaluated at the single rate point of their weights.
        device: torch device for a model loaded here.
        per_image: include the ``per_image`` rows.
        estimate: likelihood bits of the forward pass instead of real coding (see the module docstring).
        progress: show a tqdm bar over the images on stderr.

    Returns:
        The results dict (validated strictly, see :func:`tcmcodec.evaluation.results.validate`), with
        ``mismatches`` (decoded images that differ from the encoder's reconstruction; None when estimating).

    Raises:
        ValueError: missing folder, no images, bad quality spec or out-of-range quality, unknown
            preset, images too small for MS-SSIM, a preset without shipped weights and no checkpoint.
    """
    from tcmcodec import codec, zoo
    from tcmcodec.evaluation import results

    spec = parse_qualities(qualities)  # syntax, before anything is loaded
    images = _check_dataset(dataset_dir)
    published = zoo.get_preset(model).published if isinstance(model, str) and checkpoint is None else ()
    if published:  # one checkpoint per quality (tcm-s): default all of them
        spec = spec if spec is not None else [float(w.quality) for w in published]
        for q in spec:
            zoo.get_preset(model).published_weights(q)  # ValueError naming the published qualities
    elif isinstance(model, str) and spec is not None:
        parse_qualities(spec, zoo.get_preset(model).levels)

    # --- the model, loaded once (presets with published checkpoints: one per quality, when first used)
    c = codec.Codec(model, checkpoint, device, quality=spec[0] if published else None)
    levels = len(published) or int(c.model.config.num_gains)
    if spec is not None:
        if not published:
            parse_qualities(spec, levels)
        points: list[float | None] = list(spec)
    else:
        points = [float(q) for q in range(1, levels + 1)] if levels else [None]
    # The header stores the quality as float32 and the codec runs the model with the stored value.
    run_q = [None if q is None else float(np.float32(q)) for q in points]
    model_name = c.name
    was_training = c.model.training
    c.model.eval()  # forward with rounding (estimate); restored below for a caller's instance
    try:
        rows, mismatches = _measure_all(c, images, points, run_q, estimate, progress)
    finally:
        c.model.train(was_training)

    dataset = Path(dataset_dir).resolve().name
    weights = _weights_label(c, model, checkpoint)
    settings = _settings(c, checkpoint, weights, estimate, levels, rows, len(images), dataset, device, mismatches)
    name = f"{model_name} (estimated)" if estimate else model_name
    data = results.make_results(
        name, _describe(model_name, weights, estimate, len(images), dataset, device), rows,
        settings=settings, per_image=per_image,
    )
    data["mismatches"] = None if estimate else mismatches
    return data
