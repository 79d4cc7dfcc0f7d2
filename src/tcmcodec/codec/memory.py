"""Refusing images that cannot fit in memory, before any network runs (instead of an allocation failure).

Untiled, the transforms keep whole feature maps: peak memory grows with the padded pixel count, about
``BYTES_PER_PIXEL_PER_N * N`` bytes per pixel for a model of width N (measured with the inference paths
of 2026-12-05, 2 threads: ``tcm-xs`` (N=32) 3.0 GiB to encode 3840x2160 untiled, ``tcm-s`` (N=64) 1.9 GiB
at 1920x1080: ~10.5 B per pixel and unit of N, plus the loaded model). Tiled
(:mod:`tcmcodec.codec.tiles`), that term is bounded by the largest tile and the rest grows by
:func:`image_bytes_per_pixel` per pixel. The estimate is compared with the memory the OS reports as
available (Linux ``MemAvailable``; CUDA: free device memory). Set ``TCMCODEC_IGNORE_MEMORY=1`` to skip
the check.

The estimates stay above the peaks measured on this project's CPU by 10-40 % (``benchmarks/README.md``:
``tcm-xs`` 1.07 / 2.14 GiB tiled at 3840x2160 / 7680x4320, estimated 1.48 / 2.8 GiB; ``tcm-s`` 1.94 /
3.60 GiB, estimated 2.34 / 4.4 GiB).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from tcmcodec.errors import ResourceError

if TYPE_CHECKING:
    from tcmcodec.models import TCM
    from tcmcodec.models.tiling import Tiling

__all__ = [
    "BYTES_PER_PIXEL_PER_N", "TILE_BUDGET", "default_tile", "fits_untiled", "estimate_bytes", "image_bytes_per_pixel",
    "available_bytes", "check_memory",
]

#: Peak bytes per padded pixel per unit of the model width N of the untiled transforms (measured ~10.5,
#: with a margin).
BYTES_PER_PIXEL_PER_N = 14
_BASE = 320 << 20  # the interpreter and torch
_BYTES_PER_WEIGHT = 16  # the float32 weights, the float64 copy of the entropy-parameter networks, filters
#: Memory the transforms of one tile (with its context) may take: sets the default tile of a model and
#: which images run untiled (up to ~1.4 Mpx for ``tcm-xs``, ~0.7 Mpx for ``tcm-s``; tiles of 1024 and 704 px).
#: Larger budgets are not faster: untiled, ``tcm-xs`` encoded 3840x2160 in 19.6 s against 13.3-15.7 s in
#: tiles of 512-2048 px (tiles keep the maps nearer the caches).
TILE_BUDGET = 608 << 20
_GIB = 1 << 30


def image_bytes_per_pixel(model: "TCM") -> int:
    """Bytes per padded pixel that tiling does not bound: the image in and out, the latents and what
    the entropy model keeps of the whole latent (float64 means, scales and decoded slices, growing with
    the latent width M). Measured growth from 3840x2160 to 7680x4320, tiled: 46 B/px for ``tcm-xs``
    (M = 160), 72 B/px for ``tcm-s`` (M = 320); this is ``24 + M / 5`` (56 and 88)."""
    return 24 + model.config.M // 5


def _transforms_bytes_per_pixel(model: "TCM") -> int:
    """Peak bytes per pixel of the untiled transforms of ``model`` (:data:`BYTES_PER_PIXEL_PER_N` times N)."""
    return BYTES_PER_PIXEL_PER_N * model.config.N


def _padded(model: "TCM", height: int, width: int) -> tuple[int, int]:
    """The image size the model codes: height and width rounded up to ``model.pad_multiple``."""
    m = model.pad_multiple
    return -(-height // m) * m, -(-width // m) * m


def estimate_bytes(model: "TCM", height: int, width: int, tiling: "Tiling | None" = None) -> int:
    """Estimated peak memory of coding a ``height`` x ``width`` image (padded to 64) with ``model``
    (``tiling``: the transforms run on one tile at a time)."""
    hp, wp = _padded(model, height, width)
    per_px = _transforms_bytes_per_pixel(model)
    base = _BASE + _BYTES_PER_WEIGHT * sum(p.numel() for p in model.parameters())
    if tiling is None or not tiling.active(hp // 16, wp // 16):
        return base + per_px * hp * wp
    side = 16 * (tiling.tile + 2 * tiling.overlap + 4)  # the largest tile with its context, in pixels
    return base + per_px * min(hp, side) * min(wp, side) + image_bytes_per_pixel(model) * hp * wp


def fits_untiled(model: "TCM", height: int, width: int) -> bool:
    """Whether the transforms of a whole ``height`` x ``width`` image (padded to 64) fit :data:`TILE_BUDGET`,
    the memory one tile may take: such images need no tiles (which cost time at their seams)."""
    hp, wp = _padded(model, height, width)
    return _transforms_bytes_per_pixel(model) * hp * wp <= TILE_BUDGET  # the untiled transforms' term


def default_tile(model: "TCM") -> int:
    """The default core side, in latents, of ``model``'s tiles: the largest whose tile with context fits
    :data:`TILE_BUDGET` (at most 64 latents = 1024 px: ``tcm-xs``; 44 = 704 px for ``tcm-s``)."""
    side = math.sqrt(TILE_BUDGET / _transforms_bytes_per_pixel(model))  # pixels, context included
    latents = int((side - 2 * 64) // 16) // 4 * 4
    return max(16, min(64, latents))


def available_bytes(device: str = "cpu") -> int | None:
    """Memory available for coding on ``device`` (None when unknown)."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(model: "TCM", height: int, width: int, what: str, tiling: "Tiling | None" = None) -> None:
    """Raise :class:`ResourceError` if coding the image would need more memory than is available.

    Args:
        model: the model that will code the image.
        height: image height.
        width: image width.
        what: "encode" or "decode", for the message.
        tiling: the tiling the transforms will run with.
    """
    if os.environ.get("TCMCODEC_IGNORE_MEMORY", "") not in ("", "0"):
        return
    device = str(next(model.parameters()).device)
    need, have = estimate_bytes(model, height, width, tiling), available_bytes(device)
    if have is not None and need > have:
        raise ResourceError(
            f"a {width}x{height} image needs about {need / _GIB:.1f} GiB to {what} with this model, "
            f"{have / _GIB:.1f} GiB are available on {device}: use a machine with more memory "
            "(or set TCMCODEC_IGNORE_MEMORY=1 to try anyway)"
        )
