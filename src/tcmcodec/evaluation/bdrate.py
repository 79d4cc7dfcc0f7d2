"""Bjøntegaard delta rate (BD-rate) and delta PSNR (BD-PSNR).

BD-rate: the average difference of log-rate between two rate-distortion curves, as a function of quality,
over the quality range both curves cover; reported in percent, ``(10 ** mean_diff - 1) * 100``. Negative =
the test codec needs fewer bits than the anchor at equal quality.

Two interpolations of log10(rate) as a function of quality (and vice versa for BD-PSNR):

- ``"pchip"`` (default): piecewise cubic Hermite interpolation through the points (Fritsch-Carlson
  monotone slopes), integrated exactly over the overlap. This is the variant of current common test
  conditions (VCEG-AL22 / JVET's spreadsheet) and of the ``bjontegaard`` package's ``pchip`` method;
  scipy's ``PchipInterpolator`` when scipy is installed, else an equivalent numpy implementation.
- ``"cubic"``: the original VCEG-M33 least-squares cubic polynomial fit (needs >= 4 points per curve).

Curves are given as CompressAI results dicts / JSON paths (``{"results": {"bpp": [...], "psnr-rgb": [...]}}``)
or bare ``{"bpp": [...], "psnr-rgb": [...]}`` dicts. ``metric`` picks the quality axis: ``"psnr-rgb"`` or
``"ms-ssim-rgb"`` (converted to dB, ``-10 log10(1 - MS-SSIM)``, as usual for MS-SSIM BD-rates; ``"ms-ssim-rgb-db"``
is accepted too). BD-PSNR for the MS-SSIM metric is therefore a delta in MS-SSIM dB.

No heavy imports at module level (scipy only inside the functions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tcmcodec.evaluation.metrics import msssim_to_db

__all__ = ["bd_rate", "bd_psnr", "bd_rate_curves", "bd_psnr_curves", "overlap", "METHODS", "METRICS"]

METHODS = ("pchip", "cubic")
METRICS = ("psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db")
_MIN_POINTS = {"pchip": 2, "cubic": 4}


# ---------------------------------------------------------------------------------------------- inputs


def _curve(obj: Any, metric: str, role: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(bpp, quality, name) from a results dict / path / bare dict, quality in dB for MS-SSIM."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if isinstance(obj, (str, Path)):
        import json

        try:
            obj = json.loads(Path(obj).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{role}: cannot read results file {obj}: {e}") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{role}: expected a results dict or a JSON path, got {type(obj).__name__}")
    name = str(obj.get("name", role))
    res = obj.get("results", obj)
    if not isinstance(res, Mapping) or "bpp" not in res:
        raise ValueError(f"{role} ({name}): no 'bpp' list in the results")
    if metric in res:
        q = res[metric]
        to_db = metric == "ms-ssim-rgb"
    elif metric == "ms-ssim-rgb-db" and "ms-ssim-rgb" in res:
        q, to_db = res["ms-ssim-rgb"], True
    elif metric == "ms-ssim-rgb" and "ms-ssim-rgb-db" in res:
        q, to_db = res["ms-ssim-rgb-db"], False
    else:
        raise ValueError(f"{role} ({name}): no {metric!r} values in the results")
    try:
        r = np.asarray(res["bpp"], dtype=np.float64).ravel()
        q = np.asarray(q, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{role} ({name}): bpp and {metric} must be lists of numbers") from None
    if r.shape != q.shape:
        raise ValueError(f"{role} ({name}): {r.size} bpp values but {q.size} {metric} values")
    if to_db:
        if np.any((q < 0) | (q >= 1)):
            raise ValueError(f"{role} ({name}): MS-SSIM values must lie in [0, 1)")
        q = np.array([msssim_to_db(v) for v in q.tolist()], dtype=np.float64)
    return r, q, name


def _check(rate: np.ndarray, dist: np.ndarray, method: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve; return (log10 rate, quality) sorted by quality."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    rate = np.asarray(rate, dtype=np.float64).ravel()
    dist = np.asarray(dist, dtype=np.float64).ravel()
    if rate.shape != dist.shape:
        raise ValueError(f"{role}: {rate.size} rates but {dist.size} quality values")
    need = _MIN_POINTS[method]
    if rate.size < need:
        raise ValueError(f"{role}: {method} needs at least {need} RD points, got {rate.size}")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(dist))):
        raise ValueError(f"{role}: rates and quality values must be finite numbers")
    if np.any(rate <= 0):
        raise ValueError(f"{role}: rates must be > 0")
    order = np.argsort(dist, kind="stable")
    lr, d = np.log10(rate[order]), dist[order]
    if np.any(np.diff(d) <= 0):
        raise ValueError(f"{role}: quality values must be distinct (got duplicates: {d.tolist()})")
    if method == "pchip" and np.any(np.diff(lr) <= 0):
        raise ValueError(
            f"{role}: the RD curve is not monotone (rate must increase with quality): "
            f"rate={rate[order].tolist()}, quality={d.tolist()}"
        )
    return lr, d


def _check_pair(
    rate_anchor: Any, dist_anchor: Any, rate_test: Any, dist_test: Any, method: str
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """:func:`_check` of the anchor curve and of the test curve."""
    return _check(rate_anchor, dist_anchor, method, "anchor"), _check(rate_test, dist_test, method, "test")


def _overlap(d1: np.ndarray, d2: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if not hi > lo:
        raise ValueError(
            f"the two curves do not overlap in {what}: anchor covers [{d1.min():.4g}, {d1.max():.4g}], "
            f"test covers [{d2.min():.4g}, {d2.max():.4g}]"
        )
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------- integration


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson / scipy PchipInterpolator derivatives (same end-point rule as scipy)."""
    h = np.diff(x)
    m = np.diff(y) / h
    n = x.size
    if n == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(n)
    # interior: weighted harmonic mean where slopes have the same sign, else 0
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same = (np.sign(m[:-1]) * np.sign(m[1:])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    d[1:-1] = np.where(same, hm, 0.0)

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        dd = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(dd) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(dd) > abs(3 * m0):
            return 3 * m0
        return float(dd)

    d[0] = edge(h[0], h[1], m[0], m[1])
    d[-1] = edge(h[-1], h[-2], m[-1], m[-2])
    return d


def _pchip_integral_numpy(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    """Exact integral over [a, b] (inside [x0, xn]) of the pchip interpolant of (x, y)."""
    d = _pchip_slopes(x, y)
    h = np.diff(x)
    delta = np.diff(y) / h
    # piece k: y_k + d_k t + c2 t^2 + c3 t^3, t = x - x_k in [0, h_k]
    c2 = (3 * delta - 2 * d[:-1] - d[1:]) / h
    c3 = (d[:-1] + d[1:] - 2 * delta) / h**2

    def antider(k: int, t: float) -> float:
        return y[k] * t + d[k] * t**2 / 2 + c2[k] * t**3 / 3 + c3[k] * t**4 / 4

    total = 0.0
    for k in range(x.size - 1):
        lo, hi = max(a, x[k]), min(b, x[k + 1])
        if hi > lo:
            total += antider(k, hi - x[k]) - antider(k, lo - x[k])
    return float(total)


def _pchip_integral(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    try:
        from scipy.interpolate import PchipInterpolator
    except ImportError:
        return _pchip_integral_numpy(x, y, a, b)
    return float(PchipInterpolator(x, y, extrapolate=False).integrate(a, b))


def _cubic_integral(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    p = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(p, b) - np.polyval(p, a))


def _mean_over(x: np.ndarray, y: np.ndarray, a: float, b: float, method: str) -> float:
    integral = _pchip_integral(x, y, a, b) if method == "pchip" else _cubic_integral(x, y, a, b)
    return integral / (b - a)


# ------------------------------------------------------------------------------------------- public


def overlap(anchor: Any, test: Any, metric: str = "psnr-rgb") -> tuple[float, float]:
    """The quality range (dB) both curves cover, over which :func:`bd_rate` integrates."""
    _, d1, _ = _curve(anchor, metric, "anchor")
    _, d2, _ = _curve(test, metric, "test")
    return _overlap(d1, d2, "quality")


def bd_rate_curves(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-rate in percent from raw arrays (rates > 0, e.g. bpp; distortion = quality, e.g. PSNR in dB)."""
    (lr1, d1), (lr2, d2) = _check_pair(rate_anchor, dist_anchor, rate_test, dist_test, method)
    lo, hi = _overlap(d1, d2, "quality")
    diff = _mean_over(d2, lr2, lo, hi, method) - _mean_over(d1, lr1, lo, hi, method)
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr_curves(
    rate_anchor: Sequence[float],
    dist_anchor: Sequence[float],
    rate_test: Sequence[float],
    dist_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-PSNR (mean quality difference, test minus anchor) over the overlapping log-rate range."""
    (lr1, d1), (lr2, d2) = _check_pair(rate_anchor, dist_anchor, rate_test, dist_test, method)
    # quality as a function of log-rate: sort by rate
    o1, o2 = np.argsort(lr1), np.argsort(lr2)
    lr1, d1, lr2, d2 = lr1[o1], d1[o1], lr2[o2], d2[o2]
    if np.any(np.diff(lr1) <= 0) or np.any(np.diff(lr2) <= 0):
        raise ValueError("rates must be distinct within each curve")
    lo, hi = _overlap(lr1, lr2, "log10(rate)")
    return float(_mean_over(lr2, d2, lo, hi, method) - _mean_over(lr1, d1, lo, hi, method))


def _on_results(
    what: str, of_curves: Callable[..., float], anchor: Any, test: Any, method: str, metric: str
) -> float:
    """``of_curves`` (:func:`bd_rate_curves` / :func:`bd_psnr_curves`) on two results; a ``ValueError`` names both."""
    r1, d1, n1 = _curve(anchor, metric, "anchor")
    r2, d2, n2 = _curve(test, metric, "test")
    try:
        return of_curves(r1, d1, r2, d2, method=method)
    except ValueError as e:
        raise ValueError(f"{what} of {n2!r} vs {n1!r} ({metric}, {method}): {e}") from None


def bd_rate(anchor: Any, test: Any, method: str = "pchip", metric: str = "psnr-rgb") -> float:
    """Bjøntegaard delta rate of ``test`` against ``anchor`` in percent (negative = test saves bits).

    ``anchor`` / ``test``: CompressAI results dicts or paths to their JSON files. ``method``: ``"pchip"``
    (default) or ``"cubic"``. ``metric``: ``"psnr-rgb"`` or ``"ms-ssim-rgb"`` (in dB). Raises ``ValueError``
    for too few points (2 for pchip, 4 for cubic), non-finite or non-positive values, non-monotone curves
    (pchip), or curves whose quality ranges do not overlap.
    """
    return _on_results("BD-rate", bd_rate_curves, anchor, test, method, metric)


def bd_psnr(anchor: Any, test: Any, method: str = "pchip", metric: str = "psnr-rgb") -> float:
    """Bjøntegaard delta PSNR in dB of ``test`` against ``anchor`` (positive = test better).

    Same arguments as :func:`bd_rate`; for ``metric="ms-ssim-rgb"`` the delta is in MS-SSIM dB.
    """
    return _on_results("BD-PSNR", bd_psnr_curves, anchor, test, method, metric)
