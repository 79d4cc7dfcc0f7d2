"""The codec's tiling policy (:mod:`tcmcodec.models.tiling` does the tiling) and the ``tiles`` stream
that records it in format version 3 files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcmcodec.codec import container as bitstream
from tcmcodec.codec.memory import default_tile, fits_untiled
from tcmcodec.errors import FormatError

if TYPE_CHECKING:
    from tcmcodec.models import TCM
    from tcmcodec.models.tiling import Tiling

__all__ = ["TILES_STREAM", "tiling_for", "read_tiling", "tiles_stream"]

#: Name of the stream with the reconstruction's tiling (format version 3): tile and overlap / 4 latents.
TILES_STREAM = "tiles"


def tiling_for(header_z_shape: tuple[int, int], tile: int | None, model: "TCM | None" = None) -> "Tiling":
    """The tiling of an image whose z has ``header_z_shape``: ``tile`` pixels a side (0: untiled), or
    automatic (None: untiled when the whole image's transforms fit the memory of one tile, else
    ``model``'s default tile)."""
    from tcmcodec.models.tiling import SCALE, Tiling, auto_tiling

    h, w = 4 * header_z_shape[0], 4 * header_z_shape[1]  # latent (y) size
    if tile is None:
        if model is None or fits_untiled(model, SCALE * h, SCALE * w):
            return Tiling()
        return auto_tiling(h, w, default_tile(model))
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0 or tile % 64:
        raise ValueError(f"tile must be 0 (untiled) or a positive multiple of 64 pixels, got {tile!r}")
    return auto_tiling(h, w, tile // SCALE)


def read_tiling(header: bitstream.Header, streams: dict[str, bytes]) -> "Tiling":
    from tcmcodec.models.tiling import ALIGN, Tiling

    if header.version < bitstream.TILED_VERSION:
        return Tiling()
    data = streams.get(TILES_STREAM)
    if data is None or len(data) != 2 or not data[0]:
        raise FormatError(f"format version {header.version} needs a 2-byte {TILES_STREAM!r} stream with a tile > 0")
    return Tiling(ALIGN * data[0], ALIGN * data[1])


def tiles_stream(tiling: "Tiling") -> bytes:
    """The ``tiles`` stream of ``tiling`` (a tiled one)."""
    from tcmcodec.models.tiling import ALIGN

    return bytes([tiling.tile // ALIGN, tiling.overlap // ALIGN])
