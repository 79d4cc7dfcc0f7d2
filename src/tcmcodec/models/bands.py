"""The entropy parameters of large latents, a band of latent rows at a time: bounded memory.

The entropy-parameter path of one slice (SWAtten, the cc transforms, LRP; float64 when coding)
builds several whole-latent tensors of ``M + slice_dim * k`` channels: ~2 GiB for ``tcm-xs`` at
7680x4320, more than its tiled transforms. Above :data:`BAND_BUDGET` per such tensor it runs on bands
of latent rows instead: each band is computed with :func:`reach` rows of context above and below
(rounded out to the attention window, so that every Swin window is where it is in the whole
latent; clipped at the latent's border) and only its core rows are kept. Within the context, zero
padding and the shifted-window masks see the band's edge instead of the neighbours; beyond
:func:`reach` rows from it nothing does, so the cores equal the whole-latent values up to the order of
float64 summation (the table indexes: identical, tested in ``tests/models/test_tiling.py``).

The bands are a pure function of the latent size and the model's configuration, so the encoder and
the decoder cut the same ones. Only the float64 path (format version 2 and later) runs in bands: float32
(version 1) files were written whole, and float32 sums in another order could pick other tables. The
means and scales of the slice being coded, the decoded slices, and the hyper-synthesis output stay
whole (a few bytes per pixel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .config import TCMConfig

__all__ = ["BAND_BUDGET", "Band", "reach", "row_bands", "banded"]

#: Largest float64 tensor of the widest slice input (the hyper-synthesis output and the support of the
#: earlier slices) that the path builds at once (4K with ``tcm-xs`` stays whole; 8K runs in bands).
BAND_BUDGET = 128 << 20

#: ``(core_start, core_end, context_start, context_end)`` latent rows of one band.
Band = tuple[int, int, int, int]


def reach(config: TCMConfig) -> int:
    """Rows above and below that a row of one slice's parameters (mean, scale, or LRP output) depends on.

    A regular then a shifted window block reach ``window + window // 2 - 1`` rows; each of the three
    residual units after them (SWAtten's ``conv_b``) one more, and so do each of the three 3x3
    convolutions of a cc or LRP transform.
    """
    w = config.atten_window
    return (w + w // 2 - 1) + 3 + 3


def row_bands(h: int, w: int, config: TCMConfig, budget: int | None = None) -> list[Band] | None:
    """The bands of a latent of ``h`` x ``w``, or ``None`` when the whole latent fits ``budget``.

    Args:
        h: latent rows.
        w: latent columns.
        config: the model's configuration (channels, attention window).
        budget: bytes that one float64 tensor of the widest slice input may take (default :data:`BAND_BUDGET`).

    Returns:
        Bands whose cores cover ``0..h`` in order, cores and context starts multiples of the attention
        window; ``None``: compute the whole latent at once.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"latent size must be positive, got {h}x{w}")
    channels = config.M + (config.M // config.num_slices) * min(config.num_slices - 1, config.max_support_slices)
    rows = (BAND_BUDGET if budget is None else budget) // (8 * channels * w)  # rows of one band, context included
    if h <= rows:
        return None
    win, r = config.atten_window, reach(config)
    core = max(win, (rows - 2 * (r + win)) // win * win)
    out = []
    for r0 in range(0, h, core):
        r1 = min(h, r0 + core)
        a0 = max(0, (r0 - r) // win * win)
        a1 = min(h, -(-(r1 + r) // win) * win)
        out.append((r0, r1, a0, a1))
    return out


def banded(fn: Callable[..., Tensor], inputs: Sequence[Tensor], bands: list[Band] | None) -> Tensor:
    """``fn(*inputs)`` computed band by band: ``fn`` maps (B, C_i, rows, W) inputs to (B, C, rows, W).

    Args:
        fn: a function of row-aligned feature maps that keeps their height and width.
        inputs: its (B, C_i, H, W) arguments, all of the same H and W.
        bands: from :func:`row_bands`; ``None``: the whole map at once.

    Returns:
        The (B, C, H, W) result, each band's core rows taken from its own evaluation.
    """
    if bands is None:
        return fn(*inputs)
    out = None
    for r0, r1, a0, a1 in bands:
        part = fn(*(t[:, :, a0:a1] for t in inputs))
        if out is None:
            b, c, _, width = part.shape
            out = torch.empty(b, c, inputs[0].shape[2], width, dtype=part.dtype, device=part.device)
        out[:, :, r0:r1] = part[:, :, r0 - a0 : r1 - a0]
    return out
