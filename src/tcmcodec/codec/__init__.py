"""Images <-> ``.tcm`` bytes.

- :mod:`tcmcodec.codec.api`: the coding API: :class:`Codec` (one loaded model) and the module
  functions :func:`compress` / :func:`decompress` (a small cache of loaded models);
- :mod:`tcmcodec.codec.image`: image normalisation (modes, bit depths, EXIF, padding, alpha);
- :mod:`tcmcodec.codec.container`: the ``.tcm`` container (header, streams, CRC; ``docs/format.md``);
- :mod:`tcmcodec.codec.files`: image folders (:func:`list_images`);
- :mod:`tcmcodec.codec.pil_plugin`: ``PIL.Image.open("x.tcm")``.

Importing this package does not load torch: the API loads it when it codes.
"""

from __future__ import annotations

from .api import (
    ALPHA_STREAM,
    CHECK_STREAM,
    CUSTOM_MODEL_NAME,
    MODEL_CACHE_SIZE,
    Codec,
    check_quality,
    clear_model_cache,
    compress,
    compress_with_reconstruction,
    decompress,
)

__all__ = [
    "Codec",
    "compress",
    "compress_with_reconstruction",
    "decompress",
    "check_quality",
    "clear_model_cache",
    "CUSTOM_MODEL_NAME",
    "ALPHA_STREAM",
    "CHECK_STREAM",
    "MODEL_CACHE_SIZE",
]
