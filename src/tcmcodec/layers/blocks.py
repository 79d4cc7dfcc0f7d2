"""Convolutional building blocks (CompressAI 1.2.8 semantics and state-dict names)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import is_channels_last
from .gdn import GDN

__all__ = [
    "ChannelsLast",
    "channels_last",
    "pointwise",
    "conv1x1",
    "conv3x3",
    "subpel_conv3x3",
    "ResidualBlock",
    "ResidualBlockWithStride",
    "ResidualBlockUpsample",
    "ResidualUnit",
]


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)


def subpel_conv3x3(in_ch: int, out_ch: int, r: int = 2) -> nn.Sequential:
    """3x3 convolution to ``out_ch * r^2`` channels followed by a pixel shuffle (upsampling by r)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch * r * r, kernel_size=3, padding=1), nn.PixelShuffle(r))


class ChannelsLast(nn.Sequential):
    """An ``nn.Sequential`` that runs its layers on channels-last (NHWC) memory.

    The transforms' convolutions run faster on CPU when their input is channels-last (oneDNN works on
    it directly instead of re-ordering every input), and the Swin blocks read their tokens, which
    are channels-last, without a transposing copy. The result is contiguous (NCHW) again.
    (``contiguous(memory_format=...)`` is free on a tensor already in that format.) Same
    state-dict names as ``nn.Sequential``; the values change only by float rounding.
    """

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C', H', W')
        for layer in self:
            x = layer(channels_last(x))
        return x.contiguous()


def channels_last(x: Tensor) -> Tensor:
    """``x`` in channels-last memory, except an RGB map (3 channels or fewer) while autograd records:
    that one is made NCHW (contiguous), also when it arrives channels-last (e.g. an HWC array
    permuted to NCHW), because the CPU backward of a strided 1x1 convolution on a 3-channel
    channels-last input corrupts the heap (PyTorch 2.13, most runs; ``tests/models/test_layers.py``).
    Forward passes are not affected, and at inference a channels-last RGB input makes the first
    convolutions' outputs channels-last as well (the first block of g_a: 1.6x faster at 768x512)."""
    if x.shape[1] > 3 or not torch.is_grad_enabled():
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a 1x1, stride-1 convolution; on a channels-last ``x`` computed as one matrix
    product over the channels, which needs no copy of ``x`` and returns channels-last (a 1x1
    convolution on channels-last input otherwise converts it to contiguous first)."""
    if is_channels_last(x):
        weight = conv.weight.flatten(1)  # (C_out, C_in)
        return F.linear(x.permute(0, 2, 3, 1), weight, conv.bias).permute(0, 3, 1, 2)
    return conv(x)


def _add_residual(out: Tensor, residual: Tensor) -> Tensor:
    """``out + residual``; in place into ``out`` (a block's own intermediate) when autograd does not
    record, which saves a whole-map allocation (and its page faults) per block."""
    if torch.is_grad_enabled():
        return out + residual
    return out.add_(residual)


class ResidualBlock(nn.Module):
    """``x + lrelu(conv2(lrelu(conv1(x))))`` with 3x3 convolutions on ``channels`` channels.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.leaky_relu = nn.LeakyReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        out = self.leaky_relu(self.conv1(x))
        out = self.leaky_relu(self.conv2(out))
        return _add_residual(out, x)


class ResidualBlockWithStride(nn.Module):
    """Downsampling residual block: ``gdn(conv2(lrelu(conv1_s2(x)))) + skip_s2(x)``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        stride: spatial stride of ``conv1`` and ``skip``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=stride)
        self.leaky_relu = nn.LeakyReLU(inplace=True)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.gdn = GDN(out_ch)
        self.skip = conv1x1(in_ch, out_ch, stride=stride) if (stride != 1 or in_ch != out_ch) else None

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, H/s, W/s)
        out = self.gdn(self.conv2(self.leaky_relu(self.conv1(x))))
        return _add_residual(out, self.skip(x) if self.skip is not None else x)


class ResidualBlockUpsample(nn.Module):
    """Upsampling residual block: ``igdn(conv(lrelu(subpel(x)))) + upsample(x)``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        upsample: upsampling factor.
    """

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2):
        super().__init__()
        self.subpel_conv = subpel_conv3x3(in_ch, out_ch, upsample)
        self.leaky_relu = nn.LeakyReLU(inplace=True)
        self.conv = conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.upsample = subpel_conv3x3(in_ch, out_ch, upsample)

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, rH, rW)
        out = self.igdn(self.conv(self.leaky_relu(self.subpel_conv(x))))
        return _add_residual(out, self.upsample(x))


class ResidualUnit(nn.Module):
    """Bottleneck residual unit of CompressAI's attention block: ``relu(x + conv(x))``.

    Args:
        channels: input and output channels; the bottleneck has ``channels // 2``.
    """

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv = nn.Sequential(
            conv1x1(channels, half), nn.ReLU(inplace=True), conv3x3(half, half), nn.ReLU(inplace=True), conv1x1(half, channels)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        return self.relu(self.conv(x) + x)
