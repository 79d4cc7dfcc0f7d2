"""The analysis and synthesis transforms g_a / g_s of a ``TCMConfig``, and their optional Haar shortcuts."""

from __future__ import annotations

from torch import nn

from ..layers import (
    ChannelsLast, HaarDown, HaarUp, ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3,
    subpel_conv3x3, tcm_stage,
)
from .config import TCMConfig

__all__ = ["analysis", "synthesis", "shortcut_links", "shortcut_taps"]


def _stage(c: TCMConfig, stage: int, outer: int) -> list[nn.Module]:
    """The blocks of one stage (index into ``depths``); ``outer``: 0 for the stage at H/2, 1 at H/4, ..."""
    dim, depth = 2 * c.N, c.depths[stage]
    if outer < c.cnn_stages:
        return [ResidualBlock(dim) for _ in range(depth)]
    return tcm_stage(dim, depth, c.head_dims[stage], c.window)


def analysis(c: TCMConfig) -> ChannelsLast:
    """g_a: (B, 3, H, W) -> (B, M, H/16, W/16); three downsampling stages, then a strided convolution."""
    C = 2 * c.N
    return ChannelsLast(
        ResidualBlockWithStride(3, C, 2), *_stage(c, 0, 0),
        ResidualBlockWithStride(C, C, 2), *_stage(c, 1, 1),
        ResidualBlockWithStride(C, C, 2), *_stage(c, 2, 2),
        conv3x3(C, c.M, stride=2),
    )


def synthesis(c: TCMConfig) -> ChannelsLast:
    """g_s: (B, M, h, w) -> (B, 3, 16 h, 16 w); the mirror of ``analysis``."""
    C = 2 * c.N
    return ChannelsLast(
        ResidualBlockUpsample(c.M, C, 2), *_stage(c, 3, 2),
        ResidualBlockUpsample(C, C, 2), *_stage(c, 4, 1),
        ResidualBlockUpsample(C, C, 2), *_stage(c, 5, 0),
        subpel_conv3x3(C, 3, 2),
    )


def shortcut_taps(c: TCMConfig, synthesis_side: bool) -> tuple[int, ...]:
    """Indexes of the layers of g_a (or g_s) that change the resolution: where the shortcuts join."""
    d = c.depths[3:] if synthesis_side else c.depths[:3]
    return (0, 1 + d[0], 2 + d[0] + d[1], 3 + d[0] + d[1] + d[2])


def shortcut_links(c: TCMConfig) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The Haar links beside g_a (3 -> 2N -> 2N -> 2N -> M) and beside g_s (M -> 2N -> 2N -> 2N -> 3)."""
    C = 2 * c.N
    down = nn.ModuleList([HaarDown(3, C), HaarDown(C, C), HaarDown(C, C), HaarDown(C, c.M)])
    up = nn.ModuleList([HaarUp(c.M, C), HaarUp(C, C), HaarUp(C, C), HaarUp(C, 3)])
    return down, up
