"""Rate-distortion plots: PSNR vs bpp and MS-SSIM (dB) vs bpp, with published curves overlaid.

matplotlib (an optional extra) is imported inside :func:`plot_rd`, with the non-interactive Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_rd", "DEFAULT_PUBLISHED", "PANELS"]

DEFAULT_PUBLISHED = ("vtm", "bpg_444_x265_ycbcr", "tcm-s-paper", "tcm-m-paper", "tcm-l-paper")
#: (results key, y-axis label) of each panel.
_PUBLISHED_COLORS = ("black", "0.55", "tab:olive", "tab:cyan", "navy", "darkgoldenrod", "teal", "maroon")
PANELS = (("psnr-rgb", "PSNR RGB [dB]"), ("ms-ssim-rgb-db", "MS-SSIM RGB [dB]  (-10 log10(1 - MS-SSIM))"))


def _load_all(items: Sequence[Any]) -> list[dict]:
    from tcmcodec.evaluation import results

    return [results.load(it) for it in items]


def _published(reference_dir: Path | None, names: Sequence[str]) -> list[dict]:
    if reference_dir is None or not names:
        return []
    from tcmcodec.evaluation import results

    out = []
    for name in names:
        path = Path(reference_dir) / (name if name.endswith(".json") else f"{name}.json")
        if not path.is_file():
            raise FileNotFoundError(f"published curve {name!r} not found: {path}")
        out.append(results.read_results(path))
    return out


def _points(data: Mapping, metric: str) -> tuple[list[float], list[float]] | None:
    from tcmcodec.evaluation import results

    try:
        bpp, vals = results.curve(data, metric)
    except KeyError:
        return None
    pts = sorted((b, v) for b, v in zip(bpp, vals) if math.isfinite(v))
    if not pts:
        return None
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_rd(
    results: Sequence[str | Path | Mapping],
    out: str | Path,
    reference_dir: str | Path | None = None,
    published: Sequence[str] = DEFAULT_PUBLISHED,
    *,
    title: str | None = None,
    max_bpp: float | None = None,
    dpi: int = 150,
) -> Path:
    """Plot RD curves and save a PNG (two panels: PSNR and MS-SSIM in dB, both vs bpp).

    ``results``: CompressAI results dicts or JSON paths, drawn solid with markers. ``published``: names of
    JSON files (without ``.json``) in ``reference_dir``, drawn dashed (skipped when ``reference_dir`` is None;
    a named file that does not exist raises ``FileNotFoundError``). Curves lacking a panel's metric are left out
    of that panel (e.g. paper curves with PSNR only). ``max_bpp``: x-axis limit (default: a little beyond the
    largest bpp of ``results``, or of the published curves when ``results`` is empty). Returns ``out``.
    """
    # A bare Figure on an Agg canvas: no pyplot, no GUI backend, no global state touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measured = _load_all(results)
    refs = _published(Path(reference_dir) if reference_dir is not None else None, published)
    if not measured and not refs:
        raise ValueError("plot_rd: nothing to plot (no results and no published curves)")

    if max_bpp is None:
        base = measured or refs
        max_bpp = max(max(d["results"]["bpp"]) for d in base) * 1.05
        max_bpp = min(max_bpp, 3.0) if not measured else max_bpp

    fig = Figure(figsize=(14, 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS))
    markers = "os^vD<>phX*"
    for ax, (metric, ylabel) in zip(axes, PANELS):
        ylo, yhi = math.inf, -math.inf
        for i, data in enumerate(measured):
            pts = _points(data, metric)
            if pts is None:
                continue
            ax.plot(*pts, marker=markers[i % len(markers)], markersize=4, linewidth=1.5, label=data["name"],
                    color=f"C{i % 10}")
            inside = [v for b, v in zip(*pts) if b <= max_bpp]
            if inside:
                ylo, yhi = min(ylo, min(inside)), max(yhi, max(inside))
        for j, data in enumerate(refs):
            pts = _points(data, metric)
            if pts is None:
                continue
            ax.plot(*pts, linestyle="--", linewidth=1.3, marker=".", markersize=5,
                    color=_PUBLISHED_COLORS[j % len(_PUBLISHED_COLORS)], label=f"{data['name']} (published)")
            if not measured:
                inside = [v for b, v in zip(*pts) if b <= max_bpp]
                if inside:
                    ylo, yhi = min(ylo, min(inside)), max(yhi, max(inside))
        ax.set_xlim(0, max_bpp)
        if math.isfinite(ylo) and math.isfinite(yhi) and yhi > ylo:
            pad = 0.04 * (yhi - ylo)
            ax.set_ylim(ylo - pad, yhi + pad)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.5)
        ax.grid(True, which="minor", alpha=0.2)
        ax.minorticks_on()
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out
