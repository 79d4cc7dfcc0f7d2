"""The entropy-coded streams of one image, as the model writes and reads them."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["ModelStreams"]


@dataclass
class ModelStreams:
    """The entropy-coded latents of one image.

    Args:
        z: coded hyper-latent symbols.
        y: coded latent symbols (all slices).
        z_shape: (height, width) of z, i.e. the padded image size / 64.
        checks: one ``CHECK_BYTES`` check value of the table indexes per slice (see
            :mod:`tcmcodec.models.params`); ``None`` = not checked (format version 1 files).
        x_hat: the encoder-side reconstruction (1, 3, H, W), when asked for; never stored.
    """

    z: bytes
    y: bytes
    z_shape: tuple[int, int]
    checks: bytes | None = None
    x_hat: Tensor | None = field(default=None, repr=False)
