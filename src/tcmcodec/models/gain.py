"""Continuous-rate gain units (Cui et al., "Asymmetric Gained Deep Image Compression with Continuous
Rate Adaptation", CVPR 2021)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GainUnit", "quality_to_lambda", "LAMBDAS", "LAMBDAS_MSSSIM"]

#: CompressAI's lambda grid for MSE models; quality q = 1..8 maps onto it.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
#: CompressAI's lambda grid for MS-SSIM models (loss ``lambda * (1 - MS-SSIM) + bpp``).
LAMBDAS_MSSSIM = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)


def quality_to_lambda(quality: float, loss: str = "mse") -> float:
    """The rate-distortion trade-off lambda for a real quality in [1, 8], log-interpolated on the grid.

    Args:
        quality: quality level; integers hit the grid exactly.
        loss: "mse" (``LAMBDAS``, for ``lambda * 255^2 * MSE + bpp``) or "ms-ssim" (``LAMBDAS_MSSSIM``).

    Returns:
        The lambda.
    """
    grid = {"mse": LAMBDAS, "ms-ssim": LAMBDAS_MSSSIM}.get(loss)
    if grid is None:
        raise ValueError(f"loss must be 'mse' or 'ms-ssim', got {loss!r}")
    if not 1.0 <= quality <= len(grid):
        raise ValueError(f"quality must be in [1, {len(grid)}], got {quality}")
    lo = min(int(math.floor(quality)), len(grid) - 1)
    t = quality - lo
    return math.exp((1 - t) * math.log(grid[lo - 1]) + t * math.log(grid[lo]))


class GainUnit(nn.Module):
    """Per-channel gain vectors for L discrete quality levels, interpolated for real qualities.

    For quality q in [1, L], with l = floor(q) and t = q - l, the gain is
    ``g[l]^(1-t) * g[l+1]^t`` (exponential interpolation), as in Cui et al.

    Args:
        levels: number of discrete levels L.
        channels: number of channels C the gain multiplies.
        init: initial gain of the first and of the last level; the levels in between are
            log-spaced. Spreading them from the start matters: with all gains at 1 the levels begin
            identical, and Adam moves a gain by only about the learning rate per step, so a short
            run never learns distinct rates (seen in our CPU run: 0.91..1.01 after 1,800 steps).
    """

    def __init__(self, levels: int, channels: int, init: tuple[float, float] = (1.0, 1.0)):
        super().__init__()
        if levels < 2 or channels < 1:
            raise ValueError(f"need levels >= 2 and channels >= 1, got {levels}, {channels}")
        if min(init) <= 0:
            raise ValueError(f"initial gains must be positive, got {init}")
        self.levels = levels
        start = torch.exp(torch.linspace(math.log(init[0]), math.log(init[1]), levels))  # (L,)
        self.gain = nn.Parameter(start[:, None].repeat(1, channels))

    def vector(self, quality: Tensor) -> Tensor:
        """Gains for each batch element: quality (B,) in [1, L] -> (B, C, 1, 1)."""
        q = quality.to(self.gain.dtype).clamp(1, self.levels) - 1  # 0-based level
        lo = q.floor().long().clamp(max=self.levels - 2)
        t = (q - lo.to(q.dtype)).unsqueeze(1)  # (B, 1)
        g = self.gain.abs().clamp_min(1e-6)  # keep gains positive for log-interpolation
        out = torch.exp((1 - t) * torch.log(g[lo]) + t * torch.log(g[lo + 1]))  # (B, C)
        return out[:, :, None, None]

    def forward(self, x: Tensor, quality: Tensor) -> Tensor:  # (B, C, H, W)
        return x * self.vector(quality)
