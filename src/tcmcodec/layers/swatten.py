"""SWAtten: the Swin-transformer-based attention module of TCM's entropy model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import SwinBlock
from .blocks import ResidualUnit, conv1x1

__all__ = ["SWAtten", "SwinPair"]


class SwinPair(nn.Module):
    """Two Swin blocks, regular (``block_1``) then shifted (``block_2``) windows, on (B, C, H, W) maps.

    Args:
        dim: channels.
        head_dim: channels per head.
        window: window size; maps of any size work (padding happens inside the attention).
    """

    def __init__(self, dim: int, head_dim: int, window: int):
        super().__init__()
        self.block_1 = SwinBlock(dim, head_dim, window, shifted=False)
        self.block_2 = SwinBlock(dim, head_dim, window, shifted=True)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        return self.block_2(self.block_1(t)).permute(0, 3, 1, 2)


class SWAtten(nn.Module):
    """Attention with channel squeezing: ``out_conv(conv_a(u) * sigmoid(conv_b(swin(u))) + u)``, ``u = in_conv(x)``.

    Args:
        dim: input and output channels d.
        inter_dim: squeezed width (the reference uses 128).
        head_dim: channels per attention head.
        window: attention window size.
    """

    def __init__(self, dim: int, inter_dim: int = 128, head_dim: int = 16, window: int = 8):
        super().__init__()
        self.in_conv = conv1x1(dim, inter_dim)
        self.non_local_block = SwinPair(inter_dim, head_dim, window)
        self.conv_a = nn.Sequential(*(ResidualUnit(inter_dim) for _ in range(3)))
        self.conv_b = nn.Sequential(*(ResidualUnit(inter_dim) for _ in range(3)), conv1x1(inter_dim, inter_dim))
        self.out_conv = conv1x1(inter_dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, d, H, W)
        return self.out_conv(self.attend(self.in_conv(x)))

    def attend(self, u: Tensor) -> Tensor:
        """The squeezed part: ``conv_a(u) * sigmoid(conv_b(swin(u))) + u`` for ``u = in_conv(x)`` (B, inter, H, W)."""
        return self.conv_a(u) * torch.sigmoid(self.conv_b(self.non_local_block(u))) + u
