"""Images <-> ``.tcm`` bytes.

- :mod:`tcmcodec.codec.api`: the coding API: :class:`Codec` (one loaded model) and the module
  functions :func:`compress` / :func:`decompress`, one implementation behind both;
- :mod:`tcmcodec.codec.models`: resolving the model to code with, the cache of loaded models;
- :mod:`tcmcodec.codec.tiles`: which tiling an image gets, and the ``tiles`` stream that records it;
- :mod:`tcmcodec.codec.memory`: the memory estimate checked before coding;
- :mod:`tcmcodec.codec.image`: image normalisation (modes, bit depths, EXIF, padding, alpha);
- :mod:`tcmcodec.codec.container`: the ``.tcm`` container (header, streams, CRC; ``docs/format.md``);
- :mod:`tcmcodec.codec.files`: image folders (:func:`list_images`);
- :mod:`tcmcodec.codec.pil_plugin`: ``PIL.Image.open("x.tcm")``.

Importing this package does not load torch: the API loads it when it codes.
"""

from __future__ import annotations

from . import api
from .api import *  # noqa: F403 - the coding API is this package's API
from .models import MODEL_CACHE_SIZE

__all__ = [*api.__all__, "MODEL_CACHE_SIZE"]
