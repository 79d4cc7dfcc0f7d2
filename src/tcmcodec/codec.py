"""Images <-> ``.tcm`` bytes: the public coding API.

::

    from tcmcodec import codec

    data = codec.compress("photo.png")                 # tcm-xs with its shipped weights, default quality
    image = codec.decompress(data)                     # PIL.Image, the header names the model

    c = codec.Codec("tcm-xs", checkpoint="run/best.safetensors")   # one loaded model for a batch
    data, reconstruction = c.compress_with_reconstruction(image, quality=2.5)
    assert c.decompress(data).tobytes() == reconstruction.tobytes()  # bit-exact on the same machine

Pipeline (see ``docs/internals.md``): the image is normalized to 8-bit RGB (gray coded as RGB with
equal channels; alpha split off), padded to a multiple of ``model.pad_multiple`` (64) by edge
replication (or zeros), coded by ``TCM.compress`` into the ``z`` / ``y`` streams, and stored with
a header (:mod:`tcmcodec.bitstream`). The alpha plane of RGBA / LA images is kept losslessly as an
extra ``"alpha"`` stream (a PNG of the plane). Decoding crops the reconstruction back, converts it to
8 bits with ``round(clamp(x, 0, 1) * 255)`` exactly as the encoder does, and restores the mode.

Accepted inputs: a path, a ``PIL.Image.Image`` or a ``uint8`` numpy array of shape (H, W), (H, W, 1),
(H, W, 2) (gray + alpha), (H, W, 3) or (H, W, 4); 1..65535 pixels per side. PIL modes: ``1``/``L``/``LA``
(restored as ``L``/``LA``), ``P``/``PA`` (as ``RGB``/``RGBA``), ``RGB``, ``RGBA``, 16-bit and 32-bit
gray (``I;16*``, ``I``, ``F``: reduced to 8 bits with a ``UserWarning``; ``uint16`` arrays too), and
anything Pillow converts to RGB (``CMYK``, ``YCbCr``, ...). The EXIF orientation is applied.

Models: a preset name (``tcmcodec.zoo``; loaded with its shipped weights, or with ``checkpoint``)
or a ``TCM`` instance. Module-level functions keep a few loaded models in a small LRU cache;
:class:`Codec` holds one. The header records the preset name (``"custom"`` when unknown) and an
8-byte fingerprint of the weights (:func:`tcmcodec.zoo.weights_id`): decoding with other weights is a
:class:`~tcmcodec.errors.FormatError` instead of garbage.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, ImageOps

from . import bitstream
from .errors import FormatError

if TYPE_CHECKING:  # torch is imported when a model is needed
    import torch

    from .models import TCM

__all__ = [
    "Codec",
    "compress",
    "compress_with_reconstruction",
    "decompress",
    "prepare_image",
    "clear_model_cache",
    "CUSTOM_MODEL_NAME",
    "ALPHA_STREAM",
]

#: Header model name of a model that is not a registered preset.
CUSTOM_MODEL_NAME = "custom"
#: Name of the stream that carries the alpha plane (a grayscale PNG) of RGBA / LA images.
ALPHA_STREAM = "alpha"
#: Models kept loaded by the module-level functions.
MODEL_CACHE_SIZE = 3

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]
ModelArg = Union[str, "TCM", None]

_EXIF_ORIENTATION = 0x0112


# --------------------------------------------------------------------------------------- images


def _check_size(width: int, height: int) -> None:
    if not (1 <= width <= bitstream.MAX_DIMENSION and 1 <= height <= bitstream.MAX_DIMENSION):
        raise ValueError(
            f"image size {width}x{height} is not supported: each side must be 1..{bitstream.MAX_DIMENSION} pixels"
        )


def _warn_depth(what: str) -> None:
    warnings.warn(
        f"{what} image reduced to 8 bits per channel (tcm codes 8-bit images)", UserWarning, stacklevel=4
    )


def _wide_to_uint8(arr: np.ndarray, full_scale: float) -> np.ndarray:
    """Scale integer / float samples with ``full_scale`` -> 255 and round to uint8."""
    x = np.asarray(arr, dtype=np.float64) * (255.0 / full_scale)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _from_array(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str]:
    if arr.dtype == np.uint16:
        _warn_depth("16-bit")
        arr = _wide_to_uint8(arr, 65535.0)
    elif arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 (or uint16), got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ValueError(f"image arrays must have shape (H, W), (H, W, 1|2|3|4), got {arr.shape}")
    _check_size(arr.shape[1], arr.shape[0])
    if arr.ndim == 2:
        gray = np.ascontiguousarray(arr)
        return np.repeat(gray[:, :, None], 3, axis=2), None, "L"
    channels = arr.shape[2]
    if channels == 2:
        return np.repeat(arr[:, :, :1], 3, axis=2), np.ascontiguousarray(arr[:, :, 1]), "LA"
    rgb = np.ascontiguousarray(arr[:, :, :3])
    if channels == 4:
        return rgb, np.ascontiguousarray(arr[:, :, 3]), "RGBA"
    return rgb, None, "RGB"


def _from_pil(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    _check_size(*img.size)
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        _warn_depth(f"{mode} (16-bit)")
        return _from_array(_wide_to_uint8(np.asarray(img), 65535.0))
    if mode == "F":
        _warn_depth("F (floating-point)")
        return _from_array(_wide_to_uint8(np.asarray(img), 255.0))
    if mode in ("1", "L"):
        return _from_array(np.asarray(img.convert("L")))
    if mode in ("LA", "La"):
        return _from_array(np.asarray(img.convert("LA")))
    if mode in ("RGBA", "RGBa", "PA"):
        return _from_array(np.asarray(img.convert("RGBA")))
    if mode == "P":
        transparent = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        target = "RGBA" if transparent else "RGB"
        return _from_array(np.asarray(img.convert(target)))
    return _from_array(np.asarray(img if mode == "RGB" else img.convert("RGB")))


def prepare_image(image: ImageInput) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Normalize an input image for coding.

    Args:
        image: a path, a PIL image or a uint8 numpy array (see the module docstring).

    Returns:
        ``(rgb, alpha, mode)``: the (H, W, 3) uint8 RGB pixels (gray repeated over the channels), the
        (H, W) uint8 alpha plane or None, and the mode the decoder restores (``L``, ``LA``, ``RGB``,
        ``RGBA``).

    Raises:
        ValueError: empty or oversized image, unsupported array dtype or shape.
        OSError: the file cannot be read or is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as img:
            img.load()
            return _from_pil(img)
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise TypeError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")


def _pad(rgb: np.ndarray, height: int, width: int, pad_mode: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    pad = ((0, height - h), (0, width - w), (0, 0))
    if pad_mode == "replicate":
        return np.pad(rgb, pad, mode="edge")
    return np.pad(rgb, pad, mode="constant", constant_values=0)


def _to_uint8_hwc(x_hat: "torch.Tensor", height: int, width: int) -> np.ndarray:
    """(1, 3, H', W') floats -> cropped (height, width, 3) uint8 with ``round(clamp(x, 0, 1) * 255)``.

    The one conversion used on both the encoder and the decoder side.
    """
    import torch

    x = x_hat[0, :, :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 0).cpu().numpy())


def _finish_image(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    img = Image.fromarray(rgb, "RGB")
    if mode in ("L", "LA"):
        img = img.convert("L")
    if mode in ("RGBA", "LA"):
        assert alpha is not None
        img = Image.merge(mode, (*img.split(), Image.fromarray(alpha, "L")))
    return img


def _encode_alpha(alpha: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(alpha, "L").save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _decode_alpha(data: bytes, height: int, width: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            if img.mode != "L" or img.size != (width, height):  # checked before decoding any pixels
                raise FormatError(
                    f"bad alpha stream: {img.mode} {img.size[0]}x{img.size[1]} image, "
                    f"expected L {width}x{height}"
                )
            img.load()
            return np.array(img, dtype=np.uint8)
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any PNG decoding failure means a corrupt stream
        raise FormatError(f"corrupt alpha stream: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------- models

_cache: OrderedDict[tuple, "TCM"] = OrderedDict()
_cache_lock = threading.Lock()
_weights_ids: "weakref.WeakKeyDictionary[Any, tuple[tuple, bytes]]" = weakref.WeakKeyDictionary()
_weights_lock = threading.Lock()


def clear_model_cache() -> None:
    """Forget the models loaded by the module-level functions."""
    with _cache_lock:
        _cache.clear()


def _checkpoint_key(checkpoint: str | os.PathLike | None) -> tuple | None:
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    try:
        st = path.stat()
    except OSError:
        return (str(path),)  # loading reports the error
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _load_model(name: str | None, checkpoint: str | os.PathLike | None, device: str) -> "TCM":
    """Build a model: preset ``name`` with its shipped weights or ``checkpoint``; or just ``checkpoint``."""
    from . import zoo

    if name is None:
        if checkpoint is None:
            raise ValueError("need a model name or a checkpoint")
        model = zoo.load_checkpoint(checkpoint, device)
        preset_name = getattr(model, "preset_name", None)
        preset = zoo.get_preset(preset_name) if preset_name in zoo.list_models() else None
        if preset is not None and model.config != preset.tcm_config():
            model.preset_name, preset = None, None  # the file's preset tag does not fit its tensors
        model.default_quality = preset.default_quality if preset is not None else None
        return model
    if checkpoint is None:
        return zoo.create_model(name, pretrained=True, device=device)
    return zoo.create_model(name, checkpoint=checkpoint, device=device)


def _cached_model(name: str | None, checkpoint: str | os.PathLike | None, device: str) -> "TCM":
    key = (name, _checkpoint_key(checkpoint), str(device))
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            _cache.move_to_end(key)
            return model
        model = _load_model(name, checkpoint, device)
        _cache[key] = model
        while len(_cache) > MODEL_CACHE_SIZE:
            _cache.popitem(last=False)
        return model


def _resolve(model: ModelArg, checkpoint: str | os.PathLike | None, device: str, cached: bool) -> "TCM":
    if model is not None and not isinstance(model, str):
        from .models import TCM

        if not isinstance(model, TCM):
            raise TypeError(f"model must be a preset name or a TCM instance, got {type(model).__name__}")
        if checkpoint is not None:
            raise ValueError("pass either a model instance or a checkpoint, not both")
        return model
    if model is not None:
        from . import zoo

        zoo.get_preset(model)  # ValueError listing the known names
    return _cached_model(model, checkpoint, device) if cached else _load_model(model, checkpoint, device)


def _model_device(model: "TCM") -> "torch.device":
    return next(model.parameters()).device


def _model_name(model: "TCM") -> str:
    name = getattr(model, "preset_name", None)
    if isinstance(name, str):
        try:
            bitstream.Header(model=name, weights_id=None, quality=0.0, height=1, width=1)
            return name
        except ValueError:
            pass
    return CUSTOM_MODEL_NAME


def _version_key(model: "TCM") -> tuple | None:
    """Identity + in-place-update counters of every tensor: changes whenever the weights can have."""
    try:
        return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))
    except RuntimeError:  # inference tensors have no version counter: do not cache
        return None


def _weights_id(model: "TCM") -> bytes:
    """``zoo.weights_id(model)``, cached per model instance until its weights change."""
    from . import zoo

    key = _version_key(model)
    with _weights_lock:
        hit = _weights_ids.get(model)
        if key is not None and hit is not None and hit[0] == key:
            return hit[1]
    wid = zoo.weights_id(model)
    if wid == bytes(len(wid)):  # pragma: no cover - 2**-64; the header reserves all-zero for "unknown"
        wid = b"\x01" + wid[1:]
    if key is not None:
        with _weights_lock:
            _weights_ids[model] = (key, wid)
    return wid


def _levels(model: "TCM") -> int:
    return int(model.config.num_gains)


def _encode_quality(model: "TCM", quality: float | None) -> float:
    """The header quality: 0.0 for fixed-rate models, else the validated (or default) quality."""
    levels = _levels(model)
    if not levels:
        if quality is not None:
            raise ValueError(
                f"{_model_name(model)} is a fixed-rate model: it takes no quality (its checkpoint sets the rate)"
            )
        return 0.0
    if quality is None:
        quality = getattr(model, "default_quality", None)
        if quality is None:
            quality = float(math.ceil((1 + levels) / 2))
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)):
        raise TypeError(f"quality must be a number, got {type(quality).__name__}")
    q = float(quality)
    if not (math.isfinite(q) and 1.0 <= q <= levels):
        raise ValueError(f"quality must be in [1, {levels}], got {quality}")
    return q


# --------------------------------------------------------------------------------------- coding


def _compress(
    model: "TCM", image: ImageInput, quality: float | None, pad_mode: str
) -> tuple[bytes, Image.Image]:
    import torch

    if pad_mode not in bitstream.PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(bitstream.PAD_MODES)}, got {pad_mode!r}")
    rgb, alpha, mode = prepare_image(image)
    height, width = rgb.shape[:2]
    q = _encode_quality(model, quality)
    header = bitstream.Header(
        model=_model_name(model),
        weights_id=_weights_id(model),
        quality=q,
        height=height,
        width=width,
        mode=mode,
        pad_mode=pad_mode,
        z_shape=(-(-height // model.pad_multiple), -(-width // model.pad_multiple)),
    )
    padded = _pad(rgb, *header.padded_size, pad_mode)
    if not padded.flags.writeable:  # np.asarray(PIL image) is read-only; torch wants writable memory
        padded = padded.copy()
    device = _model_device(model)
    with torch.inference_mode():
        x = torch.from_numpy(padded).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        streams = model.compress(x, header.quality if _levels(model) else None, return_x_hat=True)
        if tuple(streams.z_shape) != header.z_shape:
            raise RuntimeError(f"model coded z of shape {tuple(streams.z_shape)}, expected {header.z_shape}")
        rec = _to_uint8_hwc(streams.x_hat, height, width)
    coded = {"z": streams.z, "y": streams.y}
    if alpha is not None:
        coded[ALPHA_STREAM] = _encode_alpha(alpha)
    return bitstream.pack(header, coded), _finish_image(rec, alpha, mode)


def _decode_model_for(
    header: bitstream.Header, model: ModelArg, checkpoint: str | os.PathLike | None, device: str, cached: bool
) -> "TCM":
    """The model named by the caller, or else by the header."""
    from . import zoo

    if model is not None:
        return _resolve(model, checkpoint, device, cached)
    if header.model in zoo.list_models():
        return _resolve(header.model, checkpoint, device, cached)
    if checkpoint is not None:
        return _resolve(None, checkpoint, device, cached)
    raise FormatError(
        f"unknown model {header.model!r}: this file needs the model or checkpoint it was coded with "
        f"(known models: {', '.join(zoo.list_models())})"
    )


def _check_model(header: bitstream.Header, model: "TCM") -> None:
    if header.has_weights_id:
        wid = _weights_id(model)
        if wid != header.weights_id:
            raise FormatError(
                f"file was coded with different weights (file {header.model} {header.weights_id.hex()}, "
                f"model {_model_name(model)} {wid.hex()})"
            )
    levels = _levels(model)
    if levels and not 1.0 <= header.quality <= levels:
        raise FormatError(f"quality {header.quality} out of the model's range [1, {levels}]")
    if not levels and header.quality != 0.0:
        raise FormatError(f"quality {header.quality} given for a fixed-rate model (expected 0)")


def _decompress(model: "TCM", header: bitstream.Header, streams: dict[str, bytes]) -> Image.Image:
    import torch

    from .models import ModelStreams

    _check_model(header, model)
    alpha = None
    if header.has_alpha:
        if ALPHA_STREAM not in streams:
            raise FormatError(f"missing {ALPHA_STREAM!r} stream for a {header.mode} image")
        alpha = _decode_alpha(streams[ALPHA_STREAM], header.height, header.width)
    coded = ModelStreams(z=streams["z"], y=streams["y"], z_shape=header.z_shape)
    try:
        with torch.inference_mode():
            x_hat = model.decompress(coded, header.quality if _levels(model) else None)
            rgb = _to_uint8_hwc(x_hat, header.height, header.width)
    except FormatError:
        raise
    except (ValueError, RuntimeError, IndexError, OverflowError, TypeError, AssertionError) as exc:
        raise FormatError(f"corrupt coded stream: {_one_line(exc)}") from exc
    return _finish_image(rgb, alpha, header.mode)


def compress_with_reconstruction(
    image: ImageInput,
    model: ModelArg = "tcm-xs",
    quality: float | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    pad_mode: str = "replicate",
) -> tuple[bytes, Image.Image]:
    """Like :func:`compress`, and also return the image the decoder will produce (bit-exact).

    Returns:
        ``(data, reconstruction)``: the ``.tcm`` bytes and the decoded image as a PIL image in the
        restored mode (computed on the encoder side, no decoding needed).
    """
    return _compress(_resolve(model, checkpoint, device, cached=True), image, quality, pad_mode)


def compress(
    image: ImageInput,
    model: ModelArg = "tcm-xs",
    quality: float | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    pad_mode: str = "replicate",
) -> bytes:
    """Compress an image into ``.tcm`` bytes.

    Args:
        image: a path, a PIL image or a uint8 numpy array (see the module docstring).
        model: a preset name (loaded with its shipped weights, or with ``checkpoint``), a ``TCM``
            instance, or None to build the model from ``checkpoint`` alone.
        quality: continuous-rate models: the quality in [1, L] (default: the model's
            ``default_quality``); it is stored as float32 and the model is run with the stored value.
            Must be None for fixed-rate models.
        checkpoint: weights file for ``model`` (see :func:`tcmcodec.zoo.load_checkpoint`).
        device: torch device for a model loaded here (an instance stays where it is).
        pad_mode: ``"replicate"`` (edge pixels, default) or ``"zero"``.

    Returns:
        The ``.tcm`` file contents.

    Raises:
        ValueError: bad image size, quality, model name or arguments.
        OSError: the image file cannot be read.
    """
    return compress_with_reconstruction(
        image, model, quality, checkpoint=checkpoint, device=device, pad_mode=pad_mode
    )[0]


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
    """One loaded model for coding many images.

    Args:
        model: a preset name, a ``TCM`` instance, or None (with ``checkpoint``).
        checkpoint: weights file (see :func:`compress`); a preset without one uses its shipped weights.
        device: torch device for a model loaded here.
        pad_mode: padding used by :meth:`compress`.
    """

    def __init__(
        self,
        model: ModelArg = "tcm-xs",
        checkpoint: str | os.PathLike | None = None,
        device: str = "cpu",
        *,
        pad_mode: str = "replicate",
    ) -> None:
        if pad_mode not in bitstream.PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(bitstream.PAD_MODES)}, got {pad_mode!r}")
        self.model = _resolve(model, checkpoint, device, cached=False)
        self.pad_mode = pad_mode

    @property
    def name(self) -> str:
        """The model name written into headers."""
        return _model_name(self.model)

    def compress(self, image: ImageInput, quality: float | None = None) -> bytes:
        """Compress one image (see :func:`compress`)."""
        return _compress(self.model, image, quality, self.pad_mode)[0]

    def compress_with_reconstruction(
        self, image: ImageInput, quality: float | None = None
    ) -> tuple[bytes, Image.Image]:
        """Compress one image; also return what the decoder will produce."""
        return _compress(self.model, image, quality, self.pad_mode)

    def decompress(self, data: bytes, *, max_pixels: int | None = bitstream.DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode one file with this codec's model (FormatError if it was coded with other weights)."""
        header, streams = bitstream.unpack(data, max_pixels=max_pixels)
        return _decompress(self.model, header, streams)

    def __repr__(self) -> str:
        return f"Codec(model={self.name!r}, device={str(_model_device(self.model))!r})"
