"""Hyper-parameters of the TCM family (torch-free: the registry and the CLI read them cheaply)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["TCMConfig"]


@dataclass(frozen=True)
class TCMConfig:
    """Hyper-parameters of a TCM model. The defaults are the reference ``tcm-l`` (N = 128).

    Args:
        N: width of each path of a TCM block; the main path has 2N channels.
        M: latent channels of y.
        z_channels: channels of the hyper-latent z.
        num_slices: channel slices of the autoregressive entropy model (M must divide evenly).
        max_support_slices: how many earlier slices each slice sees.
        depths: TCM blocks per stage: g_a's three stages, then g_s's three stages.
        head_dims: attention head width of each of those six stages.
        window: attention window of g_a and g_s.
        hyper_depth: TCM blocks in h_a and in each hyper-synthesis.
        hyper_head_dim: attention head width in the hyper transforms.
        hyper_window: attention window in the hyper transforms.
        atten_inter_dim: squeezed width of SWAtten.
        atten_head_dim: attention head width of SWAtten.
        atten_window: attention window of SWAtten.
        cc_hidden: hidden widths of the mean / scale / LRP transforms.
        num_gains: 0 for a fixed-rate model; L >= 2 for continuous rate with L gain levels
            (quality in [1, L]).
        cnn_stages: how many of the outer stages of g_a and of g_s (at H/2, then H/4, ...) are built of
            plain residual blocks (``depths`` of them) instead of TCM blocks; 0: TCM blocks everywhere.
        haar_shortcuts: a linear Haar-wavelet path beside g_a and g_s (``layers.haar``, after AuxT).
    """

    N: int = 128
    M: int = 320
    z_channels: int = 192
    num_slices: int = 5
    max_support_slices: int = 5
    depths: tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    head_dims: tuple[int, ...] = (8, 16, 32, 32, 16, 8)
    window: int = 8
    hyper_depth: int = 2
    hyper_head_dim: int = 32
    hyper_window: int = 4
    atten_inter_dim: int = 128
    atten_head_dim: int = 16
    atten_window: int = 8
    cc_hidden: tuple[int, int] = (224, 128)
    num_gains: int = 0
    cnn_stages: int = 0
    haar_shortcuts: bool = False

    def __post_init__(self) -> None:
        if self.N < 1 or self.M < 1 or self.z_channels < 1:
            raise ValueError("N, M and z_channels must be positive")
        if self.num_slices < 1 or self.M % self.num_slices:
            raise ValueError(f"M ({self.M}) must be a positive multiple of num_slices ({self.num_slices})")
        if len(self.depths) != 6 or len(self.head_dims) != 6:
            raise ValueError("depths and head_dims need six entries (three g_a stages, three g_s stages)")
        if not 0 <= self.cnn_stages <= 3:
            raise ValueError(f"cnn_stages must be in [0, 3], got {self.cnn_stages}")
        if self.num_gains == 1 or self.num_gains < 0:
            raise ValueError(f"num_gains must be 0 or >= 2, got {self.num_gains}")
        # Lists from JSON / argparse become tuples, so configs compare and hash.
        for name in ("depths", "head_dims", "cc_hidden"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def check_quality(self, quality: Any) -> float:
        """``quality`` as a float in [1, num_gains]: the one quality check of the package.

        Raises:
            ValueError: a fixed-rate config (``num_gains == 0``), or a quality out of range / not finite.
            TypeError: ``quality`` is not a real number.
        """
        if not self.num_gains:
            raise ValueError("this model has a fixed rate: it takes no quality (its checkpoint sets the rate)")
        if isinstance(quality, bool) or not isinstance(quality, numbers.Real):
            raise TypeError(f"quality must be a number, got {type(quality).__name__}")
        q = float(quality)
        if not (math.isfinite(q) and 1.0 <= q <= self.num_gains):
            raise ValueError(f"quality must be in [1, {self.num_gains}], got {quality}")
        return q

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TCMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TCMConfig fields: {sorted(unknown)}")
        return cls(**d)
