"""Image quality metrics on 8-bit RGB: PSNR and MS-SSIM (linear and in dB).

All functions take two images of the same size in any of these forms:

- ``PIL.Image.Image`` (converted to RGB),
- ``numpy.ndarray`` of ``uint8``, shape (H, W, 3) (or (H, W) for grayscale),
- floating point ``numpy.ndarray`` / ``torch.Tensor`` with values in [0, 1], shape (H, W, 3), (3, H, W) or
  (1, 3, H, W): they are clamped and rounded to 8 bits first (what a decoder writing a PNG would output).

PSNR and MS-SSIM are always measured on the 8-bit RGB values (peak 255), averaged over the three channels
(MSE over all R, G, B samples; MS-SSIM averaged over the channels as pytorch_msssim does), as in CompressAI's
``psnr-rgb`` / ``ms-ssim-rgb``.

``pytorch_msssim`` (an optional extra) is imported on first use of :func:`ms_ssim`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["to_uint8", "mse", "psnr", "ms_ssim", "ms_ssim_db", "msssim_to_db", "MS_SSIM_MIN_SIDE"]

#: MS-SSIM with the standard 5 scales and an 11x11 window needs both sides > (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def to_uint8(img: Any) -> np.ndarray:
    """Convert an image to a ``uint8`` array of shape (H, W, C) (C = 3 for colour images)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(img, Image.Image):
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        arr = np.asarray(img)
    else:
        if type(img).__module__.startswith("torch"):
            img = img.detach().to("cpu").float().numpy()
        arr = np.asarray(img)
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise ValueError(f"expected a single image, got a batch of shape {arr.shape}")
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating):
                arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
            else:
                raise ValueError(f"integer images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, C), got {arr.shape}")
    return arr


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a8, b8 = to_uint8(a), to_uint8(b)
    if a8.shape != b8.shape:
        raise ValueError(f"image shapes differ: {a8.shape} vs {b8.shape}")
    return a8, b8


def mse(a: Any, b: Any) -> float:
    """Mean squared error over all 8-bit samples (all channels); summed exactly in integers, a band of
    rows at a time (a few MiB of temporaries whatever the image size)."""
    a8, b8 = _pair(a, b)
    rows = max(1, (1 << 19) // max(1, a8[0].size))
    total = 0
    for i in range(0, a8.shape[0], rows):
        d = a8[i : i + rows].astype(np.int64) - b8[i : i + rows]
        total += int(np.vdot(d.ravel(), d.ravel()))
    return total / a8.size


def psnr(a: Any, b: Any) -> float:
    """PSNR in dB on 8-bit RGB (peak 255, MSE over all channels); ``inf`` for identical images."""
    m = mse(a, b)
    if m == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / m)


def require_msssim() -> Any:
    """``pytorch_msssim.ms_ssim``, or ImportError naming the extra that installs it."""
    try:
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError:
        raise ImportError("MS-SSIM needs pytorch-msssim: pip install 'tcmcodec[eval]'") from None
    return _ms_ssim


def ms_ssim(a: Any, b: Any) -> float:
    """MS-SSIM on 8-bit RGB (pytorch_msssim in float32, 5 scales, Gaussian window 11, sigma 1.5, data range 255).

    Returns ``nan`` for images with a side shorter than :data:`MS_SSIM_MIN_SIDE` (161) pixels, which
    the standard 5-scale MS-SSIM cannot measure.
    """
    a8, b8 = _pair(a, b)
    if min(a8.shape[0], a8.shape[1]) < MS_SSIM_MIN_SIDE:
        return math.nan
    import torch

    _ms_ssim = require_msssim()

    def t(x: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).unsqueeze(0).to(torch.float32)

    with torch.no_grad():
        val = _ms_ssim(t(a8), t(b8), data_range=255.0, size_average=True)
    return float(val)


def msssim_to_db(value: float) -> float:
    """MS-SSIM in dB: ``-10 log10(1 - value)`` (``inf`` for 1)."""
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


def ms_ssim_db(a: Any, b: Any) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)``."""
    return msssim_to_db(ms_ssim(a, b))
