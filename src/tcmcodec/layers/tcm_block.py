"""The TCM block (the reference's ``ConvTransBlock``): a parallel CNN + Swin transformer block."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import SwinBlock
from .blocks import ResidualBlock, pointwise

__all__ = ["TCMBlock"]


class TCMBlock(nn.Module):
    """Mixed Transformer-CNN block on ``conv_dim + trans_dim`` channels.

    ``t = conv1_1(x)`` is split into a convolutional part (``conv_block``, a residual block, plus a
    further identity) and a transformer part (``trans_block``, a Swin block on channels-last); the
    two are concatenated, mixed by ``conv1_2`` and added to the input.

    Args:
        conv_dim: channels of the convolutional path.
        trans_dim: channels of the transformer path.
        head_dim: channels per attention head.
        window: attention window size.
        shifted: shifted windows ("SW") instead of regular ones ("W").
    """

    def __init__(self, conv_dim: int, trans_dim: int, head_dim: int, window: int, shifted: bool = False):
        super().__init__()
        self.conv_dim, self.trans_dim = conv_dim, trans_dim
        dim = conv_dim + trans_dim
        self.trans_block = SwinBlock(trans_dim, head_dim, window, shifted)
        self.conv1_1 = nn.Conv2d(dim, dim, kernel_size=1)
        self.conv1_2 = nn.Conv2d(dim, dim, kernel_size=1)
        self.conv_block = ResidualBlock(conv_dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W), C = conv_dim + trans_dim
        conv_x, trans_x = torch.split(pointwise(self.conv1_1, x), (self.conv_dim, self.trans_dim), dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1))  # (B, H, W, C_t)
        if torch.is_grad_enabled() or not x.is_contiguous(memory_format=torch.channels_last):
            return x + pointwise(self.conv1_2, torch.cat((conv_x, trans_x.permute(0, 3, 1, 2)), dim=1))
        # Inference on channels-last maps: conv1_2 of the concatenation as two products accumulated
        # onto the input (no concatenated copy, no separate residual pass).
        b, c, h, w = x.shape
        weight = self.conv1_2.weight.flatten(1)  # (C, C)
        out = torch.addmm(x.permute(0, 2, 3, 1).reshape(-1, c), conv_x.permute(0, 2, 3, 1).reshape(-1, self.conv_dim),
                          weight[:, : self.conv_dim].T)  # (B * H * W, C)
        out.addmm_(trans_x.reshape(-1, self.trans_dim), weight[:, self.conv_dim :].T)
        out += self.conv1_2.bias
        return out.view(b, h, w, c).permute(0, 3, 1, 2)  # channels-last (B, C, H, W)


def tcm_stage(dim: int, depth: int, head_dim: int, window: int) -> list[nn.Module]:
    """``depth`` TCM blocks on ``dim`` channels (split in halves), alternating W and SW windows."""
    half = dim // 2
    return [TCMBlock(half, dim - half, head_dim, window, shifted=bool(i % 2)) for i in range(depth)]
