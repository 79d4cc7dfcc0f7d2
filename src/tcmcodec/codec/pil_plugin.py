"""Pillow plugin: ``PIL.Image.open("photo.tcm")`` decodes ``.tcm`` files; ``image.save("x.tcm")`` codes them.

Importing this module registers the plugin (:func:`register` does it again, and sets decoding
options)::

    import tcmcodec.codec.pil_plugin            # or: tcmcodec.codec.pil_plugin.register()
    from PIL import Image

    img = Image.open("photo.tcm")         # reads only the header: size and mode, no torch
    img.load()                            # decodes (with the model the header names)
    Image.open("photo.png").save("photo.tcm", quality=3.5)   # model="tcm-xs", checkpoint=... accepted too

Opening is cheap (the header is at most 61 bytes, parsed by :mod:`tcmcodec.codec.container`); the pixels
are decoded by :func:`tcmcodec.codec.decompress` on first access. A file whose header is invalid is
not recognized (``PIL.UnidentifiedImageError``); a corrupt payload or unavailable weights fail on
``load()`` with :class:`~tcmcodec.errors.FormatError` / ``ValueError``.
"""

from __future__ import annotations

import os
from typing import IO, Any

from PIL import Image, ImageFile

from tcmcodec.codec import container as bitstream
from tcmcodec.errors import FormatError

__all__ = ["TcmImageFile", "register", "FORMAT", "EXTENSION", "MIME"]

FORMAT = "TCM"
EXTENSION = ".tcm"
MIME = "image/x-tcm"

# Bytes read to parse the header: the longest header is 61 bytes.
_HEADER_PREFIX = 64

# Decoding options set by register(); read at load() time.
_options: dict[str, Any] = {"model": None, "checkpoint": None, "device": "cpu"}


def _accept(prefix: bytes) -> bool:
    return bitstream.sniff(prefix)


class TcmImageFile(ImageFile.ImageFile):
    """A ``.tcm`` file opened by Pillow (size and mode from the header, pixels decoded on ``load()``)."""

    format = FORMAT
    format_description = "TCM learned image codec"
    _close_exclusive_fp_after_loading = True

    def _open(self) -> None:
        assert self.fp is not None
        try:
            header = bitstream.read_header(self.fp.read(_HEADER_PREFIX))
        except FormatError as exc:  # SyntaxError: Pillow's "not this format" signal
            raise SyntaxError(f"not a valid .tcm file: {exc}") from None
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["tcm_model"] = header.model
        self.info["tcm_quality"] = header.quality
        self.tile = []
        self._tcm_loaded = False

    def load(self) -> Any:
        if not getattr(self, "_tcm_loaded", True):
            from tcmcodec import codec

            assert self.fp is not None
            self.fp.seek(0)
            data = self.fp.read()
            img = codec.decompress(
                data, model=_options["model"], checkpoint=_options["checkpoint"], device=_options["device"]
            )
            if img.mode != self.mode or img.size != self.size:  # pragma: no cover - same header
                raise FormatError("decoded image does not match the header")
            self.im = img.im
            self._tcm_loaded = True
            if self._exclusive_fp and self._close_exclusive_fp_after_loading:
                self.fp.close()
            self.fp = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from tcmcodec import codec

    info = im.encoderinfo
    model = info.get("model", "tcm-xs")
    data = codec.compress(
        im,
        model,
        info.get("quality"),
        checkpoint=info.get("checkpoint"),
        device=info.get("device", "cpu"),
        pad_mode=info.get("pad_mode", "replicate"),
    )
    fp.write(data)


def register(
    *, model: Any = None, checkpoint: str | os.PathLike | None = None, device: str = "cpu"
) -> None:
    """Register the ``TCM`` format with Pillow (idempotent) and set how ``load()`` decodes.

    Args:
        model: decode with this preset name or ``TCM`` instance (default: the preset the header
            names, with its shipped weights).
        checkpoint: decode with these weights.
        device: torch device for models loaded by the plugin.

    Calling ``register()`` with no arguments restores the defaults.
    """
    _options.update(model=model, checkpoint=checkpoint, device=device)
    Image.register_open(FORMAT, TcmImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)


register()
