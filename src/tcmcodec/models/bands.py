"""The entropy parameters of large latents, a band of latent rows at a time: bounded memory.

The entropy-parameter path of one slice (SWAtten, the cc transforms, LRP; float64 when coding)
reads ``M + slice_dim * k`` channels per latent and builds several whole-latent intermediates: ~2 GiB
for ``tcm-xs`` at 7680x4320, more than its tiled transforms. Above :data:`BAND_BUDGET` per such input it runs on bands
of latent rows instead: each band is computed with :func:`reach` rows of context above and below
(rounded out to the attention window, so that every Swin window is where it is in the whole
latent; clipped at the latent's border) and only its core rows are kept. A large hyper-synthesis
output (the latent means and scales that every slice reads, 2 x M float64 values per latent: 332 MB for
``tcm-xs`` at 7680x4320; above :data:`HYPER_BUDGET`) is then not kept whole either: :class:`HyperRows`
computes the rows a band needs from the rows of ``z`` above them, with :func:`hyper_reach` rows of
context, each time a band reads them (11-12 % more time at 7680x4320 for ~200 MiB less); its last layer
(a 3x3 convolution to ``4 M`` channels and a pixel shuffle) runs on the rows asked for only. Within the context, zero
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
from torch import Tensor, nn

from .config import TCMConfig

__all__ = [
    "BAND_BUDGET", "HYPER_BUDGET", "Band", "reach", "row_bands", "banded", "hyper_reach", "hyper_in_bands", "HyperRows",
]

#: Largest float64 widest slice input (the hyper-synthesis output and the support of the earlier slices,
#: as if concatenated) that the path reads at once (4K with ``tcm-xs`` stays whole; 8K runs in bands). Bands
#: change the values by float64 rounding only (as thread counts do), so files decode whatever budget the
#: build that wrote them used.
BAND_BUDGET = 128 << 20

#: Largest hyper-synthesis output (float64 means and scales together) kept whole when the slices run in
#: bands; larger ones are computed band by band (:class:`HyperRows`), which costs two hyper-syntheses per
#: slice and band: measured +15-22 % time for ``tcm-s`` at 3840x2160 (166 MB, saving 45-120 MiB of peak),
#: +11-12 % for ``tcm-xs`` at 7680x4320 (332 MB, saving ~200 MiB).
HYPER_BUDGET = 256 << 20

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


def hyper_reach(config: TCMConfig) -> int:
    """Rows of ``z`` above and below whose hyper-synthesis output a latent row may depend on, plus one
    attention window: the upsampling block (a 3x3 convolution at the z rows, one after the upsampling,
    the upsampling skip: 3 rows at twice z's resolution), each TCM block (its residual block's two 3x3
    convolutions or a window of ``hyper_window`` rows: max(2, window - 1)), the final 3x3 convolution (1);
    halved to z rows, rounded up, and one window (the shifted windows' masks see a band's edge as the
    map's) and one row of margin added."""
    w = config.hyper_window
    rows = 3 + config.hyper_depth * max(2, w - 1) + 1  # at twice z's resolution
    return -(-rows // 2) + -(-w // 2) + 1


def hyper_in_bands(h: int, w: int, config: TCMConfig) -> bool:
    """Whether the hyper-synthesis output of an h x w latent whose slices run in bands is computed band by
    band: when its float64 means and scales exceed :data:`HYPER_BUDGET`."""
    return 2 * config.M * h * w * 8 > HYPER_BUDGET


class HyperRows:
    """A hyper-synthesis output (latent means or scales) that computes the rows asked for from ``z``.

    Args:
        module: ``h_mean_s`` or ``h_scale_s``: (B, Z, zh, zw) -> (B, M, 4 zh, 4 zw).
        z: (B, Z, zh, zw) the (gain-corrected) hyper-latent.
        size: (h, w) of the latent (the output is cropped to it, as the whole one is).
        config: the model's configuration (hyper window and depth).
    """

    def __init__(self, module: nn.Sequential, z: Tensor, size: tuple[int, int], config: TCMConfig):
        self.module, self.z, self.size = module, z, size
        self.halo = hyper_reach(config)
        self.align = max(1, config.hyper_window // 2)  # z rows of one attention window (at twice z's resolution)
        last = module[-1]
        self.upsample = _subpel_factor(last)  # the last layer runs on the rows needed only (None: on all)
        self.body = module[:-1] if self.upsample else module

    def rows(self, a0: int, a1: int) -> Tensor:
        """Latent rows ``a0 .. a1`` (B, M, a1 - a0, w): equal to the whole output's up to float summation order."""
        zh, w = self.z.shape[2], self.size[1]
        z0 = max(0, a0 // 4 - self.halo) // self.align * self.align  # windows where they are in the whole map
        z1 = min(zh, -(-(-(-a1 // 4) + self.halo) // self.align) * self.align)
        out = self.body(self.z[:, :, z0:z1])  # (B, C, rows, W) at the resolution before the last layer
        l0, l1 = a0 - 4 * z0, a1 - 4 * z0  # the latent rows asked for, within this computation
        r = self.upsample
        if r:  # its 3x3 convolution on the rows that reach l0 .. l1 (one more each side), then the shuffle
            c0, c1 = max(0, l0 // r - 1), min(out.shape[2], -(-l1 // r) + 1)
            out, l0, l1 = self.module[-1](out[:, :, c0:c1]), l0 - r * c0, l1 - r * c0
        return out[:, :, l0:l1, :w]


def _subpel_factor(layer: nn.Module) -> int | None:
    """r when ``layer`` is a 'same' 3x3 convolution followed by a pixel shuffle by r (``subpel_conv3x3``)."""
    if not (isinstance(layer, nn.Sequential) and len(layer) == 2):
        return None
    conv, shuffle = layer
    if (isinstance(conv, nn.Conv2d) and isinstance(shuffle, nn.PixelShuffle) and conv.kernel_size == (3, 3)
            and conv.padding == (1, 1) and conv.stride == (1, 1) and conv.dilation == (1, 1)):
        return shuffle.upscale_factor
    return None


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


def banded(fn: Callable[..., Tensor], inputs: Sequence[Tensor | HyperRows], bands: list[Band] | None) -> Tensor:
    """``fn(*inputs)`` computed band by band: ``fn`` maps (B, C_i, rows, W) inputs to (B, C, rows, W).

    Args:
        fn: a function of row-aligned feature maps that keeps their height and width.
        inputs: its (B, C_i, H, W) arguments, all of the same H and W; with ``bands``, also
            :class:`HyperRows`, whose rows are computed for each band.
        bands: from :func:`row_bands`; ``None``: the whole map at once.

    Returns:
        The (B, C, H, W) result, each band's core rows taken from its own evaluation.
    """
    if bands is None:
        return fn(*inputs)
    out = None
    for r0, r1, a0, a1 in bands:
        part = fn(*(t.rows(a0, a1) if isinstance(t, HyperRows) else t[:, :, a0:a1] for t in inputs))
        if out is None:
            b, c, _, width = part.shape
            out = torch.empty(b, c, bands[-1][1], width, dtype=part.dtype, device=part.device)
        out[:, :, r0:r1] = part[:, :, r0 - a0 : r1 - a0]
    return out
