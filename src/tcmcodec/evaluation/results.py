"""Rate-distortion results in CompressAI's JSON format: read, write, validate, average.

A results file (as in CompressAI's ``results/image/kodak/*.json``)::

    {
      "name": "WebP",
      "description": "WebP (method 6) through Pillow 13.0.0, libwebp 1.6.0",
      "results": {
        "bpp":            [...],   # mean bits per pixel (bytes * 8 / (W * H)), one value per RD point
        "psnr-rgb":       [...],   # mean PSNR (dB) on 8-bit RGB
        "ms-ssim-rgb":    [...],   # mean MS-SSIM on 8-bit RGB
        "ms-ssim-rgb-db": [...],   # optional: -10 log10(1 - ms-ssim-rgb)
        "encoding_time":  [...],   # mean seconds per image
        "decoding_time":  [...]
      },
      "settings": {...},           # optional: what produced each point (e.g. {"parameter": "quality", "values": [...]})
      "per_image": [               # optional: one row per (image, RD point)
        {"image": "kodim01.png", "point": 0, "param": 10, "bpp": ..., "psnr-rgb": ..., ...}
      ]
    }

``results`` lists are parallel (one entry per RD point). Published files may carry only ``bpp`` and
``psnr-rgb`` (e.g. paper curves); :func:`validate` accepts those, ``validate(..., strict=True)`` requires the
full set that :func:`make_results` writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tcmcodec._fileio import write_atomic

__all__ = [
    "METRIC_KEYS",
    "REQUIRED_KEYS",
    "SCHEMA",
    "load",
    "read_results",
    "write_results",
    "validate",
    "make_results",
    "average_rows",
    "curve",
    "clean",
]

#: Keys of ``results`` that :func:`make_results` writes (``ms-ssim-rgb-db`` is optional).
REQUIRED_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")
#: Keys of ``results`` this module knows (all lists of numbers, parallel).
METRIC_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "encoding_time", "decoding_time")

#: JSON Schema (draft 2020-12) of a strict results file, for documentation and external validators.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CompressAI rate-distortion results",
    "type": "object",
    "required": ["name", "description", "results"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "results": {
            "type": "object",
            "required": list(REQUIRED_KEYS),
            "properties": {k: {"type": "array", "items": {"type": "number"}, "minItems": 1} for k in METRIC_KEYS},
            "additionalProperties": {"type": "array"},
        },
        "settings": {"type": "object"},
        "per_image": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["image", "bpp", "psnr-rgb"],
                "properties": {
                    "image": {"type": "string"},
                    "point": {"type": "integer"},
                    **{k: {"type": "number"} for k in METRIC_KEYS},
                },
            },
        },
    },
}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(data: Any, strict: bool = False) -> dict:
    """Check ``data`` is a CompressAI results dict; return it, or raise ``ValueError`` naming the problem.

    Always required: ``name`` (non-empty string), ``results`` (object) with a non-empty ``bpp`` list and
    at least one quality metric (``psnr-rgb`` / ``ms-ssim-rgb``); every known list the same length, made of
    finite numbers, ``bpp`` > 0,
    ``ms-ssim-rgb`` in [0, 1]. With ``strict=True`` also ``description`` and all of :data:`REQUIRED_KEYS`,
    and well-formed ``per_image`` rows if present.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"results must be a JSON object, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("results: 'name' must be a non-empty string")
    if strict and not isinstance(data.get("description"), str):
        raise ValueError("results: 'description' must be a string")
    res = data.get("results")
    if not isinstance(res, Mapping):
        raise ValueError("results: 'results' must be an object of parallel lists")
    required = REQUIRED_KEYS if strict else ("bpp",)
    for key in required:
        if key not in res:
            raise ValueError(f"results: missing results[{key!r}]")
    if "psnr-rgb" not in res and "ms-ssim-rgb" not in res:
        raise ValueError("results: needs results['psnr-rgb'] or results['ms-ssim-rgb']")
    n = None
    for key in METRIC_KEYS:
        if key not in res:
            continue
        values = res[key]
        if not isinstance(values, list) or not values:
            raise ValueError(f"results: results[{key!r}] must be a non-empty list")
        if n is None:
            n = len(values)
        elif len(values) != n:
            raise ValueError(f"results: results[{key!r}] has {len(values)} values, expected {n} (as 'bpp')")
        for i, v in enumerate(values):
            if not _is_number(v):
                raise ValueError(f"results: results[{key!r}][{i}] is not a number: {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"results: results[{key!r}][{i}] is not finite: {v!r}")
        if key == "bpp" and any(v <= 0 for v in values):
            raise ValueError("results: bpp values must be > 0")
        if key == "ms-ssim-rgb" and any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError("results: ms-ssim-rgb values must lie in [0, 1]")
        if key in ("encoding_time", "decoding_time") and any(v < 0 for v in values):
            raise ValueError(f"results: {key} values must be >= 0")
    if "settings" in data and not isinstance(data["settings"], Mapping):
        raise ValueError("results: 'settings' must be an object")
    if "per_image" in data:
        rows = data["per_image"]
        if not isinstance(rows, list):
            raise ValueError("results: 'per_image' must be a list of objects")
        if strict:
            for i, row in enumerate(rows):
                if not isinstance(row, Mapping) or not isinstance(row.get("image"), str):
                    raise ValueError(f"results: per_image[{i}] must be an object with an 'image' name")
                for key in ("bpp", "psnr-rgb"):
                    if not _is_number(row.get(key)):
                        raise ValueError(f"results: per_image[{i}][{key!r}] must be a number")
    return dict(data)


def read_results(path: str | Path, strict: bool = False) -> dict:
    """Read and validate a results JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    try:
        return validate(data, strict=strict)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load(obj: str | Path | Mapping) -> dict:
    """A results dict from a path or a dict (a bare ``{"bpp": ..., "psnr-rgb": ...}`` mapping is wrapped)."""
    if isinstance(obj, (str, Path)):
        return read_results(obj)
    if isinstance(obj, Mapping):
        if "results" not in obj and "bpp" in obj:
            obj = {"name": str(obj.get("name", "curve")), "description": "", "results": dict(obj)}
        return validate(obj)
    raise TypeError(f"expected a results dict or a path, got {type(obj).__name__}")


def clean(obj: Any) -> Any:
    """``obj`` made JSON-safe: non-finite floats (e.g. MS-SSIM of a tiny per-image crop) become None (null),
    paths strings, mapping keys strings, tuples lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj




def write_results(path: str | Path, data: Mapping, indent: int = 2) -> Path:
    """Validate (strict) and write a results dict as JSON; creates parent folders. Returns the path.

    The file is replaced atomically (temporary file in the same folder, then ``os.replace``): a reader
    never sees a partial file, and a failed write leaves the previous one in place.
    """
    validate(data, strict=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(clean(data), indent=indent, allow_nan=False) + "\n"
    return write_atomic(path, text.encode("utf-8"))


def average_rows(rows: Iterable[Mapping], by: str = "point") -> list[dict]:
    """Average per-image rows per RD point: group by ``row[by]``, mean of every numeric metric key.

    Returns one dict per group (with ``by`` and ``count``), sorted by mean bpp.
    """
    groups: dict[Any, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(row[by], []).append(row)
    out = []
    for key, members in groups.items():
        avg: dict[str, Any] = {by: key, "count": len(members)}
        for metric in METRIC_KEYS:
            vals = [float(r[metric]) for r in members if _is_number(r.get(metric)) and math.isfinite(r[metric])]
            if vals:
                avg[metric] = sum(vals) / len(vals)
        for extra in ("param",):
            if extra in members[0]:
                avg[extra] = members[0][extra]
        out.append(avg)
    out.sort(key=lambda r: r.get("bpp", 0.0))
    return out


def make_results(
    name: str,
    description: str,
    rows: Sequence[Mapping],
    *,
    by: str = "point",
    settings: Mapping | None = None,
    per_image: bool = True,
    ms_ssim_db: bool = True,
) -> dict:
    """Build a validated results dict from per-image rows (each with ``by``, ``bpp``, ``psnr-rgb``,
    ``ms-ssim-rgb``, ``encoding_time``, ``decoding_time``): points are the means over images, sorted by bpp."""
    avg = average_rows(rows, by=by)
    if not avg:
        raise ValueError("make_results: no rows")
    missing = sorted({k for a in avg for k in REQUIRED_KEYS if k not in a})
    if missing:
        raise ValueError(f"make_results: no finite values for {missing} at some RD point")
    results: dict[str, list[float]] = {k: [float(a[k]) for a in avg] for k in REQUIRED_KEYS}
    if ms_ssim_db and all(v < 1.0 for v in results["ms-ssim-rgb"]):
        from tcmcodec.evaluation.metrics import msssim_to_db  # metrics imports numpy: not at module import

        results["ms-ssim-rgb-db"] = [msssim_to_db(v) for v in results["ms-ssim-rgb"]]
    data: dict[str, Any] = {"name": name, "description": description, "results": results}
    if settings is not None:
        data["settings"] = dict(settings)
    if per_image:
        data["per_image"] = [dict(r) for r in rows]
    return validate(data, strict=True)


def curve(data: str | Path | Mapping, metric: str = "psnr-rgb") -> tuple[list[float], list[float]]:
    """``(bpp, values)`` of a results file or dict for ``metric``; ``ms-ssim-rgb-db`` is derived from
    ``ms-ssim-rgb`` when absent. Raises ``KeyError`` if the metric is not there."""
    res = load(data)["results"]
    bpp = [float(v) for v in res["bpp"]]
    if metric in res:
        return bpp, [float(v) for v in res[metric]]
    if metric == "ms-ssim-rgb-db" and "ms-ssim-rgb" in res:
        from tcmcodec.evaluation.metrics import msssim_to_db

        return bpp, [msssim_to_db(v) for v in res["ms-ssim-rgb"]]
    raise KeyError(f"{load(data)['name']!r} has no {metric!r} values")
