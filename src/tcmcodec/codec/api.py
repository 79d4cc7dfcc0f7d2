"""Images <-> ``.tcm`` bytes: the public coding API.

::

    from tcmcodec import codec

    data = codec.compress("photo.png")                 # tcm-xs with its shipped weights, default quality
    image = codec.decompress(data)                     # PIL.Image, the header names the model

    c = codec.Codec("tcm-xs", checkpoint="run/best.safetensors")   # one loaded model for a batch
    data, reconstruction = c.compress_with_reconstruction(image, quality=2.5)
    assert c.decompress(data).tobytes() == reconstruction.tobytes()  # bit-exact on the same machine

Pipeline (see ``docs/internals.md``; the image steps live in :mod:`tcmcodec.codec.image`): the image is
normalized to 8-bit RGB (gray coded as RGB with equal channels; alpha split off), padded to a multiple
of ``model.pad_multiple`` (64) by edge replication (or zeros), coded by ``TCM.compress`` into the ``z`` /
``y`` streams, and stored with a header (:mod:`tcmcodec.codec.container`). The alpha plane of RGBA / LA
images is kept losslessly as an extra ``"alpha"`` stream (a PNG of the plane). Decoding crops the
reconstruction back, converts it to 8 bits with ``round(clamp(x, 0, 1) * 255)`` exactly as the encoder
does, and restores the mode.

Accepted inputs: a path, a ``PIL.Image.Image`` or a ``uint8`` numpy array of shape (H, W), (H, W, 1),
(H, W, 2) (gray + alpha), (H, W, 3) or (H, W, 4); 1..65535 pixels per side. PIL modes: ``1``/``L``/``LA``
(restored as ``L``/``LA``), ``P``/``PA`` (as ``RGB``/``RGBA``), ``RGB``, ``RGBA``, 16-bit and 32-bit
gray (``I;16*``, ``I``, ``F``: reduced to 8 bits with a ``UserWarning``; ``uint16`` arrays too), and
anything Pillow converts to RGB (``CMYK``, ``YCbCr``, ...). The EXIF orientation is applied. Oversized
images (a side over 65535, or over Pillow's decompression-bomb limit) are a ``ValueError``, raised
before a file's pixels are decoded.

Models: a preset name (``tcmcodec.zoo``; loaded with its shipped weights, or with ``checkpoint``)
or a ``TCM`` instance. Module-level functions keep a few loaded models in a small LRU cache;
:class:`Codec` holds one. The header records the preset name (``"custom"`` when unknown) and an
8-byte fingerprint of the weights (:func:`tcmcodec.zoo.weights_id`): decoding with other weights is a
:class:`~tcmcodec.errors.FormatError` instead of garbage.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from PIL import Image

from tcmcodec.codec import container as bitstream
from tcmcodec.codec.models import (
    CUSTOM_MODEL_NAME,
    MAX_FIXED_RATE_QUALITY,
    ModelArg,
    check_quality,
    clear_model_cache,
    model_levels,
    model_device,
    model_name,
    resolve,
    weights_id,
)
from tcmcodec.codec import tiles
from tcmcodec.errors import FormatError
from tcmcodec.codec.memory import check_memory
from tcmcodec.codec.image import ImageInput, decode_alpha, encode_alpha, finish_image, pad_image, prepare_image, to_uint8_hwc

if TYPE_CHECKING:  # torch is imported when a model is needed
    import numpy as np
    import torch

    from tcmcodec.models import TCM

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
]

#: Name of the stream that carries the alpha plane (a grayscale PNG) of RGBA / LA images.
ALPHA_STREAM = "alpha"
#: Name of the stream with the per-slice check values of the entropy parameters (format version 2).
CHECK_STREAM = "check"


# --------------------------------------------------------------------------------------- coding


def _compress(
    model: "TCM", image: ImageInput, quality: float | None, pad_mode: str, reconstruct: bool = True,
    tile: int | None = None,
) -> tuple[bytes, Image.Image | None]:
    """Code one image; also return the decoder's output when ``reconstruct`` (one more synthesis)."""
    import torch

    if pad_mode not in bitstream.PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(bitstream.PAD_MODES)}, got {pad_mode!r}")
    rgb, alpha, mode = prepare_image(image)
    height, width = rgb.shape[:2]
    q = check_quality(model, quality)
    z_shape = (-(-height // model.pad_multiple), -(-width // model.pad_multiple))
    tiling = tiles.tiling_for(z_shape, tile, model)
    header = bitstream.Header(
        model=model_name(model),
        weights_id=weights_id(model),
        quality=q,
        height=height,
        width=width,
        mode=mode,
        pad_mode=pad_mode,
        z_shape=z_shape,
        version=bitstream.TILED_VERSION if tiling.tile else bitstream.VERSION,
    )
    check_memory(model, height, width, "encode", tiling)
    padded = [pad_image(rgb, *header.padded_size, pad_mode)]
    del rgb  # the padded copy (or rgb itself) is all the coder reads: one full-size image less
    device = model_device(model)
    with torch.inference_mode():
        # The model's only reference to the image: it frees it after the analysis (TCM.compress).
        streams = model.compress(_image_tensor(padded.pop(), device), header.quality if model_levels(model) else None,
                                 return_x_hat=reconstruct, tiling=tiling)
        if tuple(streams.z_shape) != header.z_shape:
            raise RuntimeError(f"model coded z of shape {tuple(streams.z_shape)}, expected {header.z_shape}")
        rec = to_uint8_hwc(streams.x_hat, height, width) if reconstruct else None
    coded = {"z": streams.z, "y": streams.y, CHECK_STREAM: streams.checks}
    if tiling.tile:
        coded[tiles.TILES_STREAM] = tiles.tiles_stream(tiling)
    if alpha is not None:
        coded[ALPHA_STREAM] = encode_alpha(alpha)
    return bitstream.pack(header, coded), (finish_image(rec, alpha, mode) if reconstruct else None)


def _image_tensor(rgb: np.ndarray, device: "torch.device") -> "torch.Tensor":
    """(H, W, 3) uint8 pixels -> (1, 3, H, W) uint8 tensor on ``device`` (a view on CPU)."""
    return _read_only_tensor(rgb).to(device).permute(2, 0, 1).unsqueeze(0)


def _read_only_tensor(array: np.ndarray) -> "torch.Tensor":
    """``torch.from_numpy(array)``, also for a read-only array (``np.asarray`` of a PIL image) without
    copying it: the coder only reads its input (tiles are converted to float copies)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _decode_model_for(
    header: bitstream.Header, model: ModelArg, checkpoint: str | os.PathLike | None, device: str, cached: bool
) -> "TCM":
    """The model named by the caller, or else by the header (for a preset with published checkpoints,
    the one of the header's quality)."""
    from tcmcodec import zoo

    if isinstance(model, str) and checkpoint is None:
        return resolve(model, None, device, cached, quality=_published_or_fail(header, model, header.quality or None))
    if model is not None:
        return resolve(model, checkpoint, device, cached)
    if header.model in zoo.list_models():
        preset = zoo.get_preset(header.model)
        if checkpoint is None and preset.published:
            return resolve(header.model, None, device, cached,
                           quality=_published_or_fail(header, header.model, header.quality or None))
        if checkpoint is None and preset.weights_path() is None:
            raise FormatError(
                f"this file was coded with {header.model}, whose weights are not shipped with tcmcodec: "
                "decode it with the checkpoint it was coded with (--checkpoint / checkpoint=; the authors' "
                "checkpoints are linked from https://github.com/jmliu206/LIC_TCM)"
            )
        return resolve(header.model, checkpoint, device, cached)
    if checkpoint is not None:
        return resolve(None, checkpoint, device, cached)
    raise FormatError(
        f"unknown model {header.model!r}: this file needs the model or checkpoint it was coded with "
        f"(known models: {', '.join(zoo.list_models())})"
    )


def _published_or_fail(header: bitstream.Header, name: str, quality: float | None) -> float | None:
    """``quality`` when preset ``name`` has a published checkpoint at it (or has none at all); else FormatError."""
    from tcmcodec import zoo

    preset = zoo.get_preset(name)  # ValueError listing the known names
    if not preset.published:
        return quality
    if quality is None:
        raise FormatError(
            f"this file was coded with a {name} checkpoint that is not one of the published ones: decode it "
            "with the checkpoint it was coded with (--checkpoint / checkpoint=)"
        )
    try:
        preset.published_weights(quality)
    except ValueError as e:
        raise FormatError(f"quality {header.quality:g} in the header: {e}") from None
    return quality


def _check_model(header: bitstream.Header, model: "TCM") -> None:
    if header.has_weights_id:
        wid = weights_id(model)
        if wid != header.weights_id:
            raise FormatError(
                f"file was coded with different weights (file {header.model} {header.weights_id.hex()}, "
                f"model {model_name(model)} {wid.hex()})"
            )
    levels = model_levels(model)
    if levels and not 1.0 <= header.quality <= levels:
        raise FormatError(f"quality {header.quality} out of the model's range [1, {levels}]")
    if not levels and not (header.quality.is_integer() and 0 <= header.quality <= MAX_FIXED_RATE_QUALITY):
        raise FormatError(f"quality {header.quality} given for a fixed-rate model (expected 0 or the quality "
                          f"of its published checkpoint)")


def _decompress(model: "TCM", header: bitstream.Header, streams: dict[str, bytes]) -> Image.Image:
    import torch

    from tcmcodec.models import ModelStreams

    _check_model(header, model)
    tiling = tiles.read_tiling(header, streams)
    check_memory(model, header.height, header.width, "decode", tiling)  # before anything the size of the image
    alpha = None
    if header.has_alpha:
        if ALPHA_STREAM not in streams:
            raise FormatError(f"missing {ALPHA_STREAM!r} stream for a {header.mode} image")
        alpha = decode_alpha(streams[ALPHA_STREAM], header.height, header.width)
    # Version 1: float32 entropy parameters, no check values; version 2: float64, checked per slice.
    checks, param_dtype = None, torch.float32
    if header.version >= 2:
        if CHECK_STREAM not in streams:
            raise FormatError(f"missing {CHECK_STREAM!r} stream (required in format version {header.version})")
        checks, param_dtype = streams[CHECK_STREAM], torch.float64
    coded = ModelStreams(z=streams["z"], y=streams["y"], z_shape=header.z_shape, checks=checks)
    # Corrupt data surfaces as FormatError from the stream decoders; anything else is a bug or a
    # resource failure (e.g. out of memory) and propagates as itself.
    with torch.inference_mode():
        x_hat = model.decompress(coded, header.quality if model_levels(model) else None, param_dtype=param_dtype,
                                 tiling=tiling, dtype=torch.uint8)
        rgb = to_uint8_hwc(x_hat, header.height, header.width)
    return finish_image(rgb, alpha, header.mode)


def compress_with_reconstruction(
    image: ImageInput,
    model: ModelArg = "tcm-xs",
    quality: float | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    pad_mode: str = "replicate",
    tile: int | None = None,
) -> tuple[bytes, Image.Image]:
    """Like :func:`compress`, and also return the image the decoder will produce (bit-exact).

    Returns:
        ``(data, reconstruction)``: the ``.tcm`` bytes and the decoded image as a PIL image in the
        restored mode (computed on the encoder side, no decoding needed).
    """
    return _compress(resolve(model, checkpoint, device, True, quality), image, quality, pad_mode, tile=tile)


def compress(
    image: ImageInput,
    model: ModelArg = "tcm-xs",
    quality: float | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    pad_mode: str = "replicate",
    tile: int | None = None,
) -> bytes:
    """Compress an image into ``.tcm`` bytes.

    Args:
        image: a path, a PIL image or a uint8 numpy array (see the module docstring).
        model: a preset name (loaded with its shipped weights, or with ``checkpoint``), a ``TCM``
            instance, or None to build the model from ``checkpoint`` alone.
        quality: continuous-rate models: the quality in [1, L] (default: the model's
            ``default_quality``); it is stored as float32 and the model is run with the stored value.
            Presets with published checkpoints (``tcm-s``, ``tcm-l``): which checkpoint (``tcm-s``:
            1..6, downloaded on first use). Must be None for other fixed-rate models.
        checkpoint: weights file for ``model`` (see :func:`tcmcodec.zoo.load_checkpoint`).
        device: torch device for a model loaded here (an instance stays where it is).
        pad_mode: ``"replicate"`` (edge pixels, default) or ``"zero"``.
        tile: side in pixels (a multiple of 64) of the tiles the analysis and the reconstruction run
            in, which bounds memory (:mod:`tcmcodec.models.tiling`); 0: untiled; None (default):
            untiled when the whole image's transforms fit one tile's memory (up to ~1.4 Mpx for
            ``tcm-xs``, ~0.7 Mpx for ``tcm-s``), else the model's default (``tcm-xs``: 1024 px,
            ``tcm-s``: 704 px). The file records the tiling.

    Returns:
        The ``.tcm`` file contents.

    Raises:
        ValueError: bad image size, quality, model name or arguments.
        OSError: the image file cannot be read.
    """
    resolved = resolve(model, checkpoint, device, True, quality)
    return _compress(resolved, image, quality, pad_mode, reconstruct=False, tile=tile)[0]


def decompress(
    data: bytes,
    *,
    model: ModelArg = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode ``.tcm`` bytes into a PIL image (mode ``L``, ``LA``, ``RGB`` or ``RGBA`` as coded).

    Args:
        data: the file contents.
        model: the model to decode with: a preset name or a ``TCM`` instance. Default: the preset
            named in the header, with its shipped weights (or with ``checkpoint``).
        checkpoint: weights file (for the header's preset, or for ``model``).
        device: torch device for a model loaded here.
        max_pixels: refuse images with more pixels than this (``None``: no limit).

    Raises:
        FormatError: the data is not a valid ``.tcm`` file, is corrupt, or was coded with other
            weights than the model's.
        ValueError: the named preset ships no weights, or a bad argument.
    """
    header, streams = bitstream.unpack(data, max_pixels=max_pixels)
    return _decompress(_decode_model_for(header, model, checkpoint, device, cached=True), header, streams)


class Codec:
    """A loaded model for coding many images.

    Args:
        model: a preset name, a ``TCM`` instance, or None (with ``checkpoint``).
        checkpoint: weights file (see :func:`compress`); a preset without one uses its shipped weights.
        device: torch device for a model loaded here.
        quality: presets with published checkpoints (``tcm-s``): the checkpoint loaded now (default:
            the preset's); others are loaded when :meth:`compress` or :meth:`decompress` needs them.
            Other models: ignored here (give the quality to :meth:`compress`).
        pad_mode: padding used by :meth:`compress`.
        tile: tiling used by :meth:`compress` (see :func:`compress`).
    """

    def __init__(
        self,
        model: ModelArg = "tcm-xs",
        checkpoint: str | os.PathLike | None = None,
        device: str = "cpu",
        *,
        quality: float | None = None,
        pad_mode: str = "replicate",
        tile: int | None = None,
    ) -> None:
        if pad_mode not in bitstream.PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(bitstream.PAD_MODES)}, got {pad_mode!r}")
        from tcmcodec import zoo

        self._spec = (model, checkpoint, device)
        #: presets with published checkpoints: one model per quality, loaded when first needed
        self._per_quality = isinstance(model, str) and checkpoint is None and bool(zoo.get_preset(model).published)
        self._models: dict[float | None, "TCM"] = {}
        tiles.tiling_for((1, 1), tile)  # ValueError for a bad tile, before any model is loaded
        self.model = self.model_for(quality)
        self.pad_mode, self.tile = pad_mode, tile

    def model_for(self, quality: float | None) -> "TCM":
        """The model that codes ``quality``: for a preset with published checkpoints the one of that
        quality (loaded on first use; None: the one loaded first), else always :attr:`model`."""
        if self._models and (quality is None or not self._per_quality):
            return self.model
        model, checkpoint, device = self._spec
        key = None
        if self._per_quality:
            from tcmcodec import zoo

            key = float(zoo.get_preset(model).published_weights(quality).quality)  # ValueError: none there
        if key not in self._models:
            self._models[key] = resolve(model, checkpoint, device, cached=False, quality=key)
        return self._models[key]

    @property
    def name(self) -> str:
        """The model name written into headers."""
        return model_name(self.model)

    def compress(self, image: ImageInput, quality: float | None = None) -> bytes:
        """Compress one image (see :func:`compress`)."""
        return _compress(self.model_for(quality), image, quality, self.pad_mode, reconstruct=False, tile=self.tile)[0]

    def compress_with_reconstruction(
        self, image: ImageInput, quality: float | None = None
    ) -> tuple[bytes, Image.Image]:
        """Compress one image; also return what the decoder will produce."""
        return _compress(self.model_for(quality), image, quality, self.pad_mode, tile=self.tile)

    def decompress(self, data: bytes, *, max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode one file with this codec's model (FormatError if it was coded with other weights)."""
        header, streams = bitstream.unpack(data, max_pixels=max_pixels)
        model = self.model
        if self._per_quality:
            model = self.model_for(_published_or_fail(header, self._spec[0], header.quality or None))
        return _decompress(model, header, streams)

    def __repr__(self) -> str:
        return f"Codec(model={self.name!r}, device={str(model_device(self.model))!r})"
