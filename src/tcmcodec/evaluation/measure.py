"""The one measurement of the package: code an image, decode it, time both, check bit-exactness, measure quality.

``tcm eval``, ``tcm anchors``, the validation of ``tcm train``, ``tcm demo`` and the benchmarks all call
:func:`measure` with a :class:`Coder`: :class:`TcmCoder` for a :class:`tcmcodec.codec.Codec`, or an
anchor codec of :mod:`tcmcodec.evaluation.codecs`. Quality is measured on 8-bit RGB
(:mod:`~tcmcodec.evaluation.metrics`): gray images as three equal channels, alpha ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from tcmcodec.evaluation import metrics

if TYPE_CHECKING:
    from tcmcodec.codec import Codec

__all__ = ["Coder", "TcmCoder", "Measurement", "measure", "rgb_pixels"]


class Coder(Protocol):
    """What :func:`measure` needs of a codec."""

    def encode(self, image: Image.Image, param: Any) -> tuple[bytes, Image.Image | None]:
        """The coded bytes and, when the codec knows it, the image the decoder must return (else None)."""

    def decode(self, data: bytes) -> Image.Image:
        """The decoded image."""


class TcmCoder:
    """A :class:`tcmcodec.codec.Codec` as a :class:`Coder`; ``param`` is the quality (None: the default).

    Args:
        codec: the loaded codec.
        check_exact: encode with the encoder-side reconstruction, so that :func:`measure` checks the
            decoded image against it (one more synthesis pass per image).
    """

    def __init__(self, codec: "Codec", check_exact: bool = True) -> None:
        self.codec, self.check_exact = codec, check_exact

    def encode(self, image: Image.Image, param: Any) -> tuple[bytes, Image.Image | None]:
        if self.check_exact:
            return self.codec.compress_with_reconstruction(image, param)
        return self.codec.compress(image, param), None

    def decode(self, data: bytes) -> Image.Image:
        return self.codec.decompress(data)


@dataclass(frozen=True)
class Measurement:
    """One image coded at one setting.

    Args:
        bytes: size of the coded file.
        pixels: width * height of the image.
        psnr: PSNR-RGB in dB of the decoded image against the reference pixels.
        ms_ssim: MS-SSIM-RGB, or None when not asked for.
        encoding_time: wall seconds of ``encode``.
        decoding_time: wall seconds of ``decode``.
        exact: whether the decoded image equals the one the encoder announced; None if it announced none.
        data: the coded bytes.
        decoded: the decoded image.
    """

    bytes: int
    pixels: int
    psnr: float
    ms_ssim: float | None
    encoding_time: float
    decoding_time: float
    exact: bool | None
    data: bytes = field(repr=False)
    decoded: Image.Image = field(repr=False, compare=False)

    @property
    def bpp(self) -> float:
        return 8.0 * self.bytes / self.pixels

    def row(self) -> dict[str, Any]:
        """The per-image entry of a results file (CompressAI's metric names)."""
        out: dict[str, Any] = {"bytes": self.bytes, "bpp": self.bpp, "psnr-rgb": self.psnr}
        if self.ms_ssim is not None:
            out["ms-ssim-rgb"] = self.ms_ssim
        out["encoding_time"], out["decoding_time"] = self.encoding_time, self.decoding_time
        if self.exact is not None:
            out["exact"] = self.exact
        return out


def rgb_pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    """The 8-bit RGB pixels (H, W, 3) that quality is measured on: gray repeated, alpha dropped."""
    arr = metrics.to_uint8(image)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def measure(
    coder: Coder, image: Image.Image, param: Any = None, *, ms_ssim: bool = True, reference: np.ndarray | None = None
) -> Measurement:
    """Encode and decode ``image`` with ``coder`` at ``param`` and measure the result.

    Args:
        coder: the codec.
        image: the image to code.
        param: the codec's setting (quality, distance, ...).
        ms_ssim: also compute MS-SSIM (slower).
        reference: the pixels to compare with (default: :func:`rgb_pixels` of ``image``).

    Returns:
        The :class:`Measurement`.

    Raises:
        ValueError: the decoded image has another size than the reference.
    """
    ref = rgb_pixels(image) if reference is None else reference
    t0 = time.perf_counter()
    data, expected = coder.encode(image, param)
    t1 = time.perf_counter()
    decoded = coder.decode(data)
    t2 = time.perf_counter()
    out = rgb_pixels(decoded)
    if out.shape != ref.shape:
        raise ValueError(f"decoded image is {out.shape[1]}x{out.shape[0]}, the original {ref.shape[1]}x{ref.shape[0]}")
    exact = None
    if expected is not None:
        exact = decoded.mode == expected.mode and decoded.size == expected.size and decoded.tobytes() == expected.tobytes()
    return Measurement(
        bytes=len(data), pixels=ref.shape[0] * ref.shape[1], psnr=metrics.psnr(ref, out),
        ms_ssim=metrics.ms_ssim(ref, out) if ms_ssim else None, encoding_time=t1 - t0, decoding_time=t2 - t1,
        exact=exact, data=data, decoded=decoded,
    )
