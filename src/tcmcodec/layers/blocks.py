"""Convolutional building blocks (CompressAI 1.2.8 semantics and state-dict names)."""

from __future__ import annotations

from torch import Tensor, nn

from .gdn import GDN

__all__ = [
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
        return out + x


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
        return out + (self.skip(x) if self.skip is not None else x)


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
        return out + self.upsample(x)


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
