"""Tiled analysis and synthesis: peak memory set by the tile, not by the image.

The latent grid (1/16 of the padded image) is cut into cores of about ``tile`` x ``tile`` latents.
Each core is transformed with ``overlap`` latents of context on every side (clipped at the image
border) and only the core of the result is kept. Cores and overlap are multiples of
:data:`ALIGN` latents (64 pixels, the model's padding multiple), so the windows of every Swin layer
(at H/2 .. H/16) sit on the same grid in a tile as in the whole image: a tile differs from the
whole image only where its context was cut, which the overlap hides (the measured cost is in
``docs/internals.md``). The entropy model always sees the whole latent (1/256 of the pixels).

A tiling is a pure function of the image size and its two numbers, so the encoder's reconstruction
and the decoder compute the same tiles and agree bit for bit; the file records the two numbers
(format version 3) so that a later default cannot change how an old file decodes.

``uint8`` images are converted to floats tile by tile and reconstructions are rounded to ``uint8``
tile by tile (``round(clamp(x, 0, 1) * 255)``, as :func:`tcmcodec.codec.image.to_uint8_hwc`), so a
full-size float image never exists; ``uint8`` reconstructions are channels-last, i.e. (H, W, 3) pixels
in memory, which the codec hands on without another full-size copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ALIGN", "SCALE", "DEFAULT_TILE", "DEFAULT_OVERLAP", "Tiling", "auto_tiling", "analyze", "synthesize"]

#: Cores and overlaps are multiples of this many latents (64 pixels).
ALIGN = 4
#: Pixels per latent along each axis.
SCALE = 16
#: Largest core side in latents (1024 pixels; the codec picks smaller ones for wider models) and the
#: context per side (64 pixels).
DEFAULT_TILE = 64
DEFAULT_OVERLAP = 4


@dataclass(frozen=True)
class Tiling:
    """How to cut the latent grid.

    Args:
        tile: core side in latents, a multiple of :data:`ALIGN` (0: untiled).
        overlap: context on each side of a core, in latents, a multiple of :data:`ALIGN`.
    """

    tile: int = 0
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        for name in ("tile", "overlap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v % ALIGN or v > 255 * ALIGN:
                raise ValueError(f"{name} must be a multiple of {ALIGN} latents in [0, {255 * ALIGN}], got {v!r}")

    def active(self, h: int, w: int) -> bool:
        """Whether a latent of (h, w) is cut into more than one tile."""
        return self.tile > 0 and max(h, w) > self.tile

    def spans(self, n: int) -> list[tuple[int, int, int, int]]:
        """The tiles along an axis of ``n`` latents: ``(core_start, core_end, context_start, context_end)``.
        Cores are as equal as the alignment allows and cover ``0..n`` exactly."""
        units = n // ALIGN
        count = max(1, -(-n // self.tile)) if self.tile else 1
        bounds = [ALIGN * (units * i // count) for i in range(count)] + [n]
        return [(a, b, max(0, a - self.overlap), min(n, b + self.overlap)) for a, b in zip(bounds, bounds[1:])]


def auto_tiling(h: int, w: int, tile: int = DEFAULT_TILE) -> Tiling:
    """The tiling of a latent of (h, w) with cores of ``tile`` latents: untiled when one core holds it."""
    tiling = Tiling(tile, DEFAULT_OVERLAP)
    return tiling if tiling.active(h, w) else Tiling()


def _to_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def _output_layout(dtype: torch.dtype) -> torch.memory_format:
    """Memory layout of reconstructions in ``dtype``: uint8 ones are channels-last, the (H, W, 3) pixels of
    an image, so that handing them on as an array needs no copy."""
    return torch.channels_last if dtype == torch.uint8 else torch.contiguous_format


def _to_output(x: Tensor, dtype: torch.dtype) -> Tensor:
    """The clamped reconstruction, in ``dtype`` (uint8: ``round(clamp(x, 0, 1) * 255)``) and its layout."""
    x = x.clamp_(0, 1)
    if dtype != torch.uint8:
        return x
    return x.mul_(255).round_().to(torch.uint8, memory_format=_output_layout(dtype))


def analyze(g_a: Callable[[Tensor], Tensor], x: Tensor, tiling: Tiling) -> Tensor:
    """``g_a`` over ``x`` (1, 3, 16 h, 16 w), float in [0, 1] or uint8, tile by tile -> (1, M, h, w)."""
    h, w = x.shape[2] // SCALE, x.shape[3] // SCALE
    if not tiling.active(h, w):
        return g_a(_to_float(x))
    out = None
    for r0, r1, a0, a1 in tiling.spans(h):
        for c0, c1, b0, b1 in tiling.spans(w):
            part = g_a(_to_float(x[:, :, SCALE * a0 : SCALE * a1, SCALE * b0 : SCALE * b1]))
            if out is None:
                out = part.new_empty(x.shape[0], part.shape[1], h, w)  # (1, M, h, w)
            out[:, :, r0:r1, c0:c1] = part[:, :, r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
    return out


def synthesize(g_s: Callable[[Tensor], Tensor], y_hat: Tensor, tiling: Tiling, dtype: torch.dtype) -> Tensor:
    """``g_s`` over ``y_hat`` (1, M, h, w) tile by tile -> the clamped reconstruction (1, 3, 16 h, 16 w) in
    ``dtype`` (float, or uint8 rounded per tile)."""
    b, _, h, w = y_hat.shape
    if not tiling.active(h, w):
        return _to_output(g_s(y_hat), dtype)
    out = torch.empty(b, 3, SCALE * h, SCALE * w, dtype=dtype, device=y_hat.device, memory_format=_output_layout(dtype))
    for r0, r1, a0, a1 in tiling.spans(h):
        for c0, c1, b0, b1 in tiling.spans(w):
            part = g_s(y_hat[:, :, a0:a1, b0:b1])
            core = part[:, :, SCALE * (r0 - a0) : SCALE * (r1 - a0), SCALE * (c0 - b0) : SCALE * (c1 - b0)]
            out[:, :, SCALE * r0 : SCALE * r1, SCALE * c0 : SCALE * c1] = _to_output(core, dtype)
    return out
