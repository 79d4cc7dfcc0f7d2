"""Images in and out of the codec: input normalization, padding, 8-bit conversion, alpha plane, mode restore.

Accepted inputs (see :mod:`tcmcodec.codec`): a path, a ``PIL.Image.Image`` or a ``uint8`` / ``uint16`` numpy
array. :func:`prepare_image` turns one into 8-bit RGB (gray repeated over the channels), the alpha plane (or
None) and the mode the decoder restores (``L``, ``LA``, ``RGB``, ``RGBA``); the EXIF orientation is applied and
16/32-bit images are reduced to 8 bits with a ``UserWarning``. The size is checked before a file's pixels are
decoded: each side 1..``bitstream.MAX_DIMENSION`` pixels, and Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``; ``DecompressionBombError``, or the warning when warnings are errors) is a
``ValueError`` too.

:func:`to_uint8_hwc` is the one float -> 8-bit conversion (``round(clamp(x, 0, 1) * 255)``) of both the encoder
and the decoder; :func:`finish_image` restores the mode; :func:`encode_alpha` / :func:`decode_alpha` code the
alpha plane losslessly as a grayscale PNG.

numpy and Pillow are imported with this module; torch only inside :func:`to_uint8_hwc`.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps

from tcmcodec.codec import container as bitstream
from tcmcodec.errors import FormatError, one_line

if TYPE_CHECKING:
    import torch

__all__ = [
    "ImageInput",
    "load_image",
    "prepare_image",
    "check_size",
    "pad_image",
    "to_uint8_hwc",
    "finish_image",
    "encode_alpha",
    "decode_alpha",
]

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

_EXIF_ORIENTATION = 0x0112


def check_size(width: int, height: int) -> None:
    """``ValueError`` unless each side is 1..``bitstream.MAX_DIMENSION`` pixels."""
    if not (1 <= width <= bitstream.MAX_DIMENSION and 1 <= height <= bitstream.MAX_DIMENSION):
        raise ValueError(
            f"image size {width}x{height} is not supported: each side must be 1..{bitstream.MAX_DIMENSION} pixels"
        )


def _warn_depth(what: str) -> None:
    warnings.warn(
        f"{what} image reduced to 8 bits per channel (tcm codes 8-bit images)", UserWarning, stacklevel=4
    )


def _warn_animated(img: Image.Image) -> None:
    frames = getattr(img, "n_frames", 1)
    if getattr(img, "is_animated", False) and frames > 1:
        warnings.warn(f"animated image: only the first of its {frames} frames is coded", UserWarning, stacklevel=4)


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
    check_size(arr.shape[1], arr.shape[0])
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
    check_size(*img.size)
    _warn_animated(img)
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


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file into memory (the file is closed): the package's one image loader.

    The size is checked before any pixel is decoded (:func:`check_size`, Pillow's decompression-bomb
    limit included); the image keeps its mode and metadata (EXIF orientation is applied by
    :func:`prepare_image`, not here).

    Raises:
        ValueError: empty or oversized image.
        OSError: the file cannot be read or is not an image.
    """
    try:
        with Image.open(path) as img:
            check_size(*img.size)  # before any pixel is decoded
            _warn_animated(img)
            if any(";16" in str(getattr(tile, "args", "")) for tile in img.tile) and img.mode in ("RGB", "RGBA"):
                _warn_depth(f"16-bit {img.mode}")  # Pillow reads 16-bit colour as 8 bits
            img.load()
            return img.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # warning: when made an error
        raise ValueError(f"{os.fspath(path)}: {one_line(exc)}") from None


def prepare_image(image: ImageInput) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Normalize an input image for coding.

    Args:
        image: a path, a PIL image or a uint8 numpy array (see the module docstring).

    Returns:
        ``(rgb, alpha, mode)``: the (H, W, 3) uint8 RGB pixels (gray repeated over the channels), the
        (H, W) uint8 alpha plane or None, and the mode the decoder restores (``L``, ``LA``, ``RGB``,
        ``RGBA``).

    Raises:
        ValueError: empty or oversized image (checked before a file's pixels are decoded; Pillow's
            decompression-bomb limit included), unsupported array dtype or shape.
        OSError: the file cannot be read or is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        return _from_pil(load_image(image))
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise TypeError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")


def pad_image(rgb: np.ndarray, height: int, width: int, pad_mode: str) -> np.ndarray:
    """Pad (H, W, 3) pixels at the bottom / right to (height, width): ``"replicate"`` edges or ``"zero"``."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    pad = ((0, height - h), (0, width - w), (0, 0))
    if pad_mode == "replicate":
        return np.pad(rgb, pad, mode="edge")
    return np.pad(rgb, pad, mode="constant", constant_values=0)


def to_uint8_hwc(x_hat: "torch.Tensor", height: int, width: int) -> np.ndarray:
    """(1, 3, H', W') floats -> cropped (height, width, 3) uint8 with ``round(clamp(x, 0, 1) * 255)``
    (uint8 input: cropped only).

    The one conversion used on both the encoder and the decoder side.
    """
    import torch

    x = x_hat[0, :, :height, :width]
    if x.dtype != torch.uint8:  # uint8: already converted, tile by tile (tcmcodec.models.tiling)
        x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    # A channels-last uint8 reconstruction cropped only at the bottom is already (H, W, 3) memory: no copy.
    return np.ascontiguousarray(x.permute(1, 2, 0).cpu().numpy())


def finish_image(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    """The decoded image in its restored ``mode`` (``L``, ``LA``, ``RGB``, ``RGBA``) from RGB pixels and alpha."""
    img = Image.fromarray(rgb, "RGB")
    if mode in ("L", "LA"):
        img = img.convert("L")
    if mode in ("RGBA", "LA"):
        assert alpha is not None
        img = Image.merge(mode, (*img.split(), Image.fromarray(alpha, "L")))
    return img


def encode_alpha(alpha: np.ndarray) -> bytes:
    """The (H, W) uint8 alpha plane as a grayscale PNG (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(alpha, "L").save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def decode_alpha(data: bytes, height: int, width: int) -> np.ndarray:
    """The alpha plane of an ``encode_alpha`` PNG; ``FormatError`` unless it is a valid L PNG of that size."""
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
        raise FormatError(f"corrupt alpha stream: {one_line(exc)}") from None
