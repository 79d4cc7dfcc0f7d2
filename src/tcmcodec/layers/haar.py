"""Haar-wavelet linear shortcuts beside the analysis and synthesis transforms (the "wavelet linear shortcuts"
WLS / iWLS of AuxT: Li et al., "On Disentangled Training for Nonlinear Transform in Learned Image
Compression", ICLR 2025).

A linear path runs beside the nonlinear transform: at every change of resolution it takes one orthonormal
Haar level (2x2 blocks -> four sub-bands), scales each sub-band channel by a learned ``exp(s)`` and mixes
the channels with a 1x1 convolution; its output is added to the transform's output at that resolution.
The linear path carries the energy-compacting part of the transform from the first step, so the
nonlinear layers learn only the rest (the paper reports ~2x faster convergence for TCM-S). Unlike AuxT,
no orthogonality loss is added: the 1x1 convolutions start orthogonal and train freely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import channels_last

__all__ = ["haar", "inverse_haar", "HAAR_FILTERS", "HaarDown", "HaarUp", "WithShortcuts"]


def haar(x: Tensor) -> Tensor:
    """One orthonormal 2-D Haar level: (B, C, H, W) -> (B, 4C, H/2, W/2), bands LL, LH, HL, HH (C each)."""
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    return 0.5 * torch.cat((a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d), dim=1)


def inverse_haar(t: Tensor) -> Tensor:
    """The inverse of ``haar``: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    ll, lh, hl, hh = (0.5 * band for band in t.chunk(4, dim=1))
    out = t.new_empty(t.shape[0], t.shape[1] // 4, 2 * t.shape[2], 2 * t.shape[3])
    out[:, :, 0::2, 0::2] = ll + lh + hl + hh
    out[:, :, 0::2, 1::2] = ll - lh + hl - hh
    out[:, :, 1::2, 0::2] = ll + lh - hl - hh
    out[:, :, 1::2, 1::2] = ll - lh - hl + hh
    return out


#: The four orthonormal Haar filters (LL, LH, HL, HH) on a 2x2 block, as ``haar`` applies them: (4, 2, 2).
HAAR_FILTERS = 0.5 * torch.tensor([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]])


class HaarDown(nn.Module):
    """``proj(haar(x) * exp(s))`` (WLS): halves the resolution, ``in_ch`` -> ``out_ch`` channels.

    All three steps are linear, so they run as one 2x2 convolution of stride 2 whose weight is built
    from ``proj`` and ``s`` on each call (the same values as the three steps, up to rounding).

    Args:
        in_ch: input channels.
        out_ch: output channels.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(4 * in_ch))  # one per (band, channel), band-major
        self.proj = nn.Conv2d(4 * in_ch, out_ch, kernel_size=1)
        nn.init.orthogonal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def weight(self) -> Tensor:  # (C_out, C_in, 2, 2)
        p = self.proj.weight.flatten(1) * self.log_scale.exp()  # (C_out, 4 C_in)
        return torch.einsum("obc,bij->ocij", p.unflatten(1, (4, -1)), HAAR_FILTERS.to(p))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        return F.conv2d(x, self.weight(), self.proj.bias, stride=2)


class HaarUp(nn.Module):
    """``inverse_haar(proj(x) / exp(s))`` (iWLS, without a bias): doubles the resolution, ``in_ch`` ->
    ``out_ch`` channels; one 2x2 transposed convolution of stride 2, as ``HaarDown``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(4 * out_ch))
        self.proj = nn.Conv2d(in_ch, 4 * out_ch, kernel_size=1, bias=False)
        nn.init.orthogonal_(self.proj.weight)

    def weight(self) -> Tensor:  # (C_in, C_out, 2, 2)
        p = self.proj.weight.flatten(1) * (-self.log_scale).exp()[:, None]  # (4 C_out, C_in)
        return torch.einsum("bci,bjk->icjk", p.unflatten(0, (4, -1)), HAAR_FILTERS.to(p))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        return F.conv_transpose2d(x, self.weight(), stride=2)


class WithShortcuts(nn.Module):
    """A transform (an ``nn.Sequential``, e.g. ``ChannelsLast``) with a linear shortcut path beside it:
    after layer ``taps[k]`` the output of ``links[k]`` (applied to the previous link's output, the first
    to the transform's input) is added.

    Built on the fly around modules registered elsewhere (the state dict keeps the transform's names).

    Args:
        transform: the layers, run on channels-last memory as ``ChannelsLast`` runs them.
        links: one ``HaarDown`` / ``HaarUp`` per tap.
        taps: indexes of the layers after which the links' outputs are added, increasing.
    """

    def __init__(self, transform: nn.Sequential, links: nn.ModuleList, taps: tuple[int, ...]):
        super().__init__()
        if len(links) != len(taps):
            raise ValueError(f"need one link per tap, got {len(links)} links and {len(taps)} taps")
        self.transform, self.links, self.taps = transform, links, taps

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C', H', W')
        aux, k = x, 0
        for i, layer in enumerate(self.transform):
            x = layer(channels_last(x))
            if k < len(self.taps) and i == self.taps[k]:
                aux = channels_last(self.links[k](aux))  # the main path's format: the sum needs no re-ordering
                x = x + aux
                k += 1
        return x.contiguous()
