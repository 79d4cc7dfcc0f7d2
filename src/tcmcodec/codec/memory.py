"""Refusing images that cannot fit in memory, before any network runs (instead of an allocation failure).

Untiled, the transforms keep whole feature maps: peak memory grows with the padded pixel count, about
``BYTES_PER_PIXEL_PER_N * N`` bytes per pixel for a model of width N (measured on this project's CPU:
``tcm-xs`` (N=32) 11.2 GiB to decode 16 Mpx, ``tcm-s`` (N=64) 16.1 GiB at 3840x2160). Tiled
(:mod:`tcmcodec.codec.tiles`), that term is bounded by the largest tile and the rest grows by
``BYTES_PER_PIXEL_IMAGE`` per pixel. The estimate is compared with the memory the OS reports as
available (Linux ``MemAvailable``; CUDA: free device memory). Set ``TCMCODEC_IGNORE_MEMORY=1`` to skip
the check.
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
    "BYTES_PER_PIXEL_PER_N", "TILE_BUDGET", "default_tile", "fits_untiled", "estimate_bytes", "available_bytes",
    "check_memory",
]

#: Peak bytes per padded pixel per unit of the model width N (measured peaks rounded up).
BYTES_PER_PIXEL_PER_N = 33
#: Bytes per padded pixel that tiling does not bound: the image and its reconstruction, the latents
#: and what the entropy model keeps of the whole latent (tcm-xs peaks grew by 34 B/px from 3840x2160
#: (1.5-1.7 GiB) to 7680x4320 (2.5 GiB), tiled, entropy parameters in bands; with a margin).
BYTES_PER_PIXEL_IMAGE = 40
_BASE = 512 << 20  # the interpreter, torch and the weights
#: Memory the transforms of one tile (with its context) may take: sets the default tile of a model.
TILE_BUDGET = int(1.4 * (1 << 30))
_GIB = 1 << 30


def estimate_bytes(model: "TCM", height: int, width: int, tiling: "Tiling | None" = None) -> int:
    """Estimated peak memory of coding a ``height`` x ``width`` image (padded to 64) with ``model``
    (``tiling``: the transforms run on one tile at a time)."""
    m = model.pad_multiple
    hp, wp = -(-height // m) * m, -(-width // m) * m
    per_n = BYTES_PER_PIXEL_PER_N * model.config.N
    if tiling is None or not tiling.active(hp // 16, wp // 16):
        return _BASE + per_n * hp * wp
    side = 16 * (tiling.tile + 2 * tiling.overlap + 4)  # the largest tile with its context, in pixels
    return _BASE + per_n * min(hp, side) * min(wp, side) + BYTES_PER_PIXEL_IMAGE * hp * wp


def fits_untiled(model: "TCM", height: int, width: int) -> bool:
    """Whether the transforms of a whole ``height`` x ``width`` image (padded to 64) fit :data:`TILE_BUDGET`,
    the memory one tile may take: such images need no tiles (which cost time at their seams)."""
    return estimate_bytes(model, height, width) - _BASE <= TILE_BUDGET  # the untiled transforms' term


def default_tile(model: "TCM") -> int:
    """The default core side, in latents, of ``model``'s tiles: the largest whose tile with context fits
    :data:`TILE_BUDGET` (at most 64 latents = 1024 px: ``tcm-xs``; 44 = 704 px for ``tcm-s``)."""
    side = math.sqrt(TILE_BUDGET / (BYTES_PER_PIXEL_PER_N * model.config.N))  # pixels, context included
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
