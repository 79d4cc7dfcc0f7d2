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
        if not torch.is_grad_enabled() and x.is_contiguous(memory_format=torch.channels_last):
            return self._infer(x)
        conv_x, trans_x = torch.split(pointwise(self.conv1_1, x), (self.conv_dim, self.trans_dim), dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1))  # (B, H, W, C_t)
        return x + pointwise(self.conv1_2, torch.cat((conv_x, trans_x.permute(0, 3, 1, 2)), dim=1))

    def _infer(self, x: Tensor) -> Tensor:
        """``forward`` at inference on a channels-last map, as matrix products over its tokens: conv1_1
        writes the two paths' inputs as two dense maps (no strided halves for the convolutions and the
        windows to copy), the residuals are added in place, and conv1_2 of the concatenation is two
        products accumulated onto the input (no concatenated copy). Same values up to float rounding."""
        b, c, h, w = x.shape
        cd = self.conv_dim
        tokens = x.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, C): a view of channels-last memory
        w1, b1 = self.conv1_1.weight.flatten(1), self.conv1_1.bias  # (C, C), (C,)
        conv_x = torch.addmm(b1[:cd], tokens, w1[:cd].T).view(b, h, w, cd).permute(0, 3, 1, 2)  # channels-last
        trans_x = torch.addmm(b1[cd:], tokens, w1[cd:].T).view(b, h, w, self.trans_dim)  # (B, H, W, C_t)
        conv_y = self.conv_block(conv_x)
        conv_y += conv_x  # the block's own residual is inside conv_block: this is the reference's second one
        del conv_x
        trans_y = self.trans_block(trans_x)  # (B, H, W, C_t)
        del trans_x
        w2 = self.conv1_2.weight.flatten(1)  # (C, C)
        out = torch.addmm(tokens, conv_y.permute(0, 2, 3, 1).reshape(-1, cd), w2[:, :cd].T)  # (B * H * W, C)
        out.addmm_(trans_y.reshape(-1, self.trans_dim), w2[:, cd:].T)
        out += self.conv1_2.bias
        return out.view(b, h, w, c).permute(0, 3, 1, 2)  # channels-last (B, C, H, W)


def tcm_stage(dim: int, depth: int, head_dim: int, window: int) -> list[nn.Module]:
    """``depth`` TCM blocks on ``dim`` channels (split in halves), alternating W and SW windows."""
    half = dim // 2
    return [TCMBlock(half, dim - half, head_dim, window, shifted=bool(i % 2)) for i in range(depth)]
