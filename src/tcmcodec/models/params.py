"""Entropy parameters that every machine computes alike (``.tcm`` format version 2).

The decoder must pick, for every latent symbol, the same coding table as the encoder. The table
index is a step function of a scale computed by a float network (hyper-synthesis, SWAtten, the
cc transforms, LRP), so if encoder and decoder compute that scale with different rounding (another
thread count, CPU family, BLAS, or a GPU) and it falls on the other side of a scale-table
boundary, the decoder reads garbage. In float32 the rounding noise is ~1e-7 relative, and on a
768x512 image one of its ~250,000 scales lands that close to a boundary about every other image
(measured: 4 of the first 8 Kodak images broke between 1 and 2 threads).

Version 2 files therefore evaluate that whole path in **float64**: a float64 copy of the
parameter networks (built once per weights version, cached on the model) runs on the float32
hyper-latent ``z_hat`` (integers plus float32 medians, exact in float64) and on ``y_hat``
(integers plus float64 means). Re-ordered float64 sums differ by ~1e-16 relative, about 1e9
times less often within reach of a boundary. (The wide 3x3 convolutions run by Winograd's
algorithm, :mod:`tcmcodec.models.winograd`, whose float64 error is of the same order as the direct
one's.) The path runs at 1/16 and 1/64 of the image resolution, so the cost is small next to the
transforms (see ``docs/internals.md``).

The copy computes the same functions in fewer operations where linear layers meet
(:class:`SliceHeads`): SWAtten ends in a 1x1 convolution from its squeezed width (128 for ``tcm-s``) to
the support's width ``d`` (320..576), and the cc and LRP transforms begin with 3x3 convolutions of
that output, so each such pair is one 3x3 convolution of the squeezed map plus a bias map (the 1x1
convolution's bias seen through the 3x3 taps that lie inside the map): 3-4x fewer multiply-adds in the
widest convolutions of the path. The mean support's two consumers (cc mean transform, LRP) share one
convolution.

A safety net covers the remaining chance: each slice carries a 16-bit check value of its table
indexes (:func:`slice_check`); the decoder verifies it before decoding the slice, and a mismatch is
a :class:`~tcmcodec.errors.FormatError` that says what happened instead of silent garbage.
"""

from __future__ import annotations

import contextlib
import copy
import types
import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FormatError
from . import winograd

__all__ = [
    "PARAM_MODULES", "CHECK_BYTES", "version_key", "param_net", "slice_check", "verify_check", "deterministic",
    "banded_conv2d", "squeezed_attention", "ComposedConv", "SliceHeads",
]

#: Sub-modules of a TCM that compute the entropy parameters (means, scales, LRP) from ``z_hat``.
PARAM_MODULES = (
    "inv_hyper_gain",
    "h_mean_s",
    "h_scale_s",
    "atten_mean",
    "atten_scale",
    "cc_mean_transforms",
    "cc_scale_transforms",
    "lrp_transforms",
)
#: Bytes of one slice's check value.
CHECK_BYTES = 2

_CACHE_ATTR = "_param_net_cache"
#: Largest unfolded input (im2col buffer) a float64 convolution of the copy builds at once: CPU float64
#: convolutions unfold their whole input (C_in * k * k values per position, ~80 bytes per image pixel for
#: tcm-xs), so larger inputs are convolved in bands of rows (see :func:`_banded_forward`).
BAND_BYTES = 16 << 20
#: 3x3 convolutions of the float64 copy with at least this many input channels run through Winograd's
#: F(2x2, 3x3) (:mod:`tcmcodec.models.winograd`; 1.3-1.9x faster on the cc and LRP transforms at Kodak
#: size). Below it, the transforms cost more than they save (measured: 64 channels, 1.4 vs 1.9 ms).
WINOGRAD_MIN_CHANNELS = 128


def banded_conv2d(x: Tensor, conv: nn.Conv2d, channels: tuple[int, int] | None = None, bias: bool = True) -> Tensor:
    """``conv(x)`` for a stride-1 'same' convolution (odd kernel, ``padding`` = half of it) of the float64
    copy, a band of output rows at a time, so that the unfolded input never exceeds :data:`BAND_BYTES`
    (same values up to float summation order). 3x3 convolutions that carry Winograd filters (set by
    :func:`param_net`) run through :func:`~tcmcodec.models.winograd.conv3x3`.

    Args:
        x: (B, C, H, W) input; C the number of ``channels``.
        conv: the convolution.
        channels: ``(start, stop)``: convolve with these input channels of ``conv`` only (default: all).
        bias: add ``conv.bias``.
    """
    start, stop = (0, conv.in_channels) if channels is None else channels
    u = getattr(conv, "_winograd", None)  # then conv.weight is None: the filters replace it
    u = None if u is None else u[:, :, start:stop]
    weight = None if u is not None else conv.weight[:, start:stop]
    bias_ = conv.bias if bias else None
    b, c, h, w = x.shape
    k, p = conv.kernel_size[0], conv.padding[0]
    if u is None:
        rows = max(1, BAND_BYTES // max(1, c * k * conv.kernel_size[1] * w * x.element_size()))  # im2col: k*k per value
    else:
        rows = max(winograd.TILE, BAND_BYTES // max(1, 4 * c * w * x.element_size()) // winograd.TILE * winograd.TILE)

    if rows >= h:  # whole: no band copies (a 1x1 convolution needs no padding at all)
        if u is None:
            return F.conv2d(x, weight, bias_, 1, conv.padding)
        return winograd.conv3x3(F.pad(x, (p, p, p, p)), u, bias_)
    out = x.new_empty(b, conv.out_channels, h, w)  # (B, C_out, H, W): stride 1, 'same' padding
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = max(0, r0 - p), min(h, r1 + k - 1 - p)  # input rows that output rows r0..r1 read
        pad_rows = (p - (r0 - lo), (r1 + k - 1 - p) - hi)  # zero rows above and below the band
        if u is None:
            out[:, :, r0:r1] = F.conv2d(F.pad(x[:, :, lo:hi], (0, 0, *pad_rows)), weight, bias_, 1, (0, conv.padding[1]))
        else:
            out[:, :, r0:r1] = winograd.conv3x3(F.pad(x[:, :, lo:hi], (p, p, *pad_rows)), u, bias_)
    return out


def squeezed_attention(swatten: nn.Module, parts: Sequence[Tensor]) -> Tensor:
    """``swatten(torch.cat(parts, dim=1))`` of the float64 copy, whose SWAtten ends at its squeezed width
    (see :class:`SliceHeads`), without building the concatenation: SWAtten's input 1x1 convolution is a
    sum of products with the parts (the last slice's input is 280 float64 channels for ``tcm-xs``, 120 MB
    per band at 7680x4320; its squeezed map 48). The copy's SWAtten modules take this as their
    ``forward``: ``atten_mean[i](parts)`` with a tuple of maps.

    Args:
        swatten: a SWAtten of the copy.
        parts: (B, C_j, H, W) maps whose channels, concatenated in order, are SWAtten's input.

    Returns:
        (B, inter_dim, H, W) the squeezed output.
    """
    u, start = None, 0
    for t in parts:
        stop = start + t.shape[1]
        part = banded_conv2d(t, swatten.in_conv, (start, stop), bias=u is None)  # (B, inter_dim, H, W)
        u = part if u is None else u.add_(part)
        start = stop
    return swatten.attend(u)


def _banded_forward(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` through :func:`banded_conv2d` (the instance-level ``forward`` of the float64 copy)."""
    return banded_conv2d(x, conv)


def _band_convolutions(module: nn.Module) -> None:
    """Make the 'same'-size convolutions of ``module`` run in bands (an instance-level ``forward``), the
    3x3 ones with Winograd filters."""
    for m in module.modules():
        if (type(m) is nn.Conv2d and m.stride == (1, 1) and m.groups == 1 and m.dilation == (1, 1)
                and m.padding_mode == "zeros" and isinstance(m.padding, tuple)
                and 2 * m.padding[0] == m.kernel_size[0] - 1 and 2 * m.padding[1] == m.kernel_size[1] - 1):
            m.forward = types.MethodType(_banded_forward, m)
            if m.kernel_size == (3, 3) and m.in_channels >= WINOGRAD_MIN_CHANNELS:
                m._winograd = winograd.filters(m.weight.detach())
                m.register_parameter("weight", None)  # 16 filter values per 9 weights: keep one of the two


class ComposedConv(nn.Module):
    """``conv3(pointwise(v))`` for a 3x3 'same' convolution ``conv3`` of the output of a 1x1 convolution
    ``pointwise``, computed as one 3x3 convolution of ``v`` plus a bias map.

    Inside the map, ``conv3`` sees ``W1 v + b1``; in its zero padding it sees 0. So the result is the 3x3
    convolution of ``v`` with the weights ``W3 W1`` (per tap) plus ``b3`` plus, at each position, the
    taps ``W3[tap] b1`` of the neighbours that lie inside the map (all nine in the interior, fewer at
    the border). Equal to the two convolutions up to float rounding, on a whole map or a band of rows.

    Args:
        weight: (C_out, d, 3, 3) weights of ``conv3``.
        bias: (C_out,) bias of ``conv3``.
        pointwise: the 1x1 convolution (d outputs from C_in inputs) whose output ``conv3`` reads.
    """

    def __init__(self, weight: Tensor, bias: Tensor, pointwise: nn.Conv2d):
        super().__init__()
        w1 = pointwise.weight.detach().flatten(1)  # (d, C_in)
        weight, bias = weight.detach(), bias.detach()
        self.conv = nn.Conv2d(w1.shape[1], weight.shape[0], 3, padding=1, bias=False).to(weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(torch.einsum("odij,dk->okij", weight, w1))  # (C_out, C_in, 3, 3)
        self.register_buffer("taps", torch.einsum("odij,d->ijo", weight, pointwise.bias.detach()))  # (3, 3, C_out)
        self.register_buffer("bias", bias.clone())

    def forward(self, v: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        out = banded_conv2d(v, self.conv, bias=False)
        h, w = v.shape[2:]
        inside = torch.einsum("ijo,ih,jw->ohw", self.taps, _inside(h, v), _inside(w, v))  # (C_out, H, W)
        return out.add_(inside.add_(self.bias.view(-1, 1, 1)))


def _inside(n: int, like: Tensor) -> Tensor:
    """(3, n): 1 where the tap at offset -1, 0, +1 of position 0..n-1 lies inside 0..n-1, else 0."""
    pos = torch.arange(n, device=like.device)
    return torch.stack([((pos + k >= 0) & (pos + k < n)) for k in (-1, 0, 1)]).to(like.dtype)


class SliceHeads(nn.Module):
    """The first layers of one slice's cc and LRP transforms in the float64 copy.

    Args:
        mean: the cc mean transform's first convolution and the mean-support part of LRP's, stacked
            (2 x C_hidden outputs), composed with ``atten_mean``'s output convolution.
        scale: the cc scale transform's first convolution, composed with ``atten_scale``'s.
        lrp_y: the decoded-slice part of LRP's first convolution (no bias: ``mean`` carries it).
    """

    def __init__(self, mean: ComposedConv, scale: ComposedConv, lrp_y: nn.Conv2d):
        super().__init__()
        self.mean, self.scale, self.lrp_y = mean, scale, lrp_y


def _compose_heads(holder: nn.Module) -> None:
    """Give ``holder`` (the float64 copy of a TCM's parameter modules) ``heads``, a :class:`SliceHeads`
    per slice, and make the layers they replace identities: SWAtten's output convolutions and the
    first convolutions of the cc and LRP transforms. The copy's SWAtten modules then take the parts of
    their input (:func:`squeezed_attention`) and return their squeezed maps, and ``cc_*_transforms[i]``
    start at their first GELU."""
    names = ("atten_mean", "atten_scale", "cc_mean_transforms", "cc_scale_transforms", "lrp_transforms")
    if not all(hasattr(holder, n) for n in names):
        return
    heads = nn.ModuleList()
    for am, ascale, cm, cs, lrp in zip(*(getattr(holder, n) for n in names)):
        am, ascale, first = am[0], ascale[0], lrp[0]
        d = cm[0].in_channels
        lrp_y = nn.Conv2d(first.in_channels - d, first.out_channels, 3, padding=1, bias=False).to(first.weight.dtype)
        with torch.no_grad():
            lrp_y.weight.copy_(first.weight[:, d:])
        mean = ComposedConv(torch.cat([cm[0].weight, first.weight[:, :d]]), torch.cat([cm[0].bias, first.bias]),
                            am.out_conv)
        heads.append(SliceHeads(mean, ComposedConv(cs[0].weight, cs[0].bias, ascale.out_conv), lrp_y))
        am.out_conv = ascale.out_conv = nn.Identity()
        am.forward = types.MethodType(squeezed_attention, am)  # takes the parts of its input
        ascale.forward = types.MethodType(squeezed_attention, ascale)
        cm[0] = cs[0] = lrp[0] = nn.Identity()
    holder.add_module("heads", heads)


def version_key(module: nn.Module) -> tuple | None:
    """Identity and in-place-update counter of every tensor of ``module``.

    It changes whenever the weights can have changed (optimizer steps and ``load_state_dict`` update
    tensors in place and bump their counters). ``None`` for inference tensors, which have no
    counter: callers must not cache then.
    """
    try:
        return tuple((t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))
    except RuntimeError:
        return None


def param_net(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The modules of ``PARAM_MODULES`` evaluated in ``dtype``: ``model`` itself for its own dtype,
    else a cached copy converted to ``dtype`` (rebuilt when the weights change).

    Args:
        model: a TCM (any module with those attributes; missing ones, e.g. the gains of a
            fixed-rate model, are skipped).
        dtype: the floating dtype to evaluate in (``torch.float64`` for version 2 files).

    Returns:
        A module whose attributes of those names compute in ``dtype``.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if next(model.parameters()).dtype == dtype:
        return model
    key = version_key(model)
    cached = model.__dict__.get(_CACHE_ATTR)
    if key is not None and cached is not None and cached[0] == (key, dtype):
        return cached[1]
    holder = nn.Module()
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, even when called for coding
        for name in PARAM_MODULES:
            sub = getattr(model, name, None)
            if sub is not None:
                holder.add_module(name, copy.deepcopy(sub))
        holder.to(dtype).train(model.training)
        if dtype == torch.float64:
            _compose_heads(holder)
            _band_convolutions(holder)
    # A plain attribute (not a registered sub-module): invisible to state_dict() and parameters().
    object.__setattr__(model, _CACHE_ATTR, ((key, dtype), holder) if key is not None else None)
    return holder


def slice_check(indexes: np.ndarray) -> bytes:
    """The 16-bit check value of one slice's table indexes: CRC-32 of the indexes as bytes
    (uint8 when they fit, else int32 little-endian), low 16 bits, little-endian.

    Args:
        indexes: integer array of coding-table indexes, any shape (read in C order).

    Returns:
        ``CHECK_BYTES`` bytes.
    """
    idx = np.ascontiguousarray(indexes)
    raw = idx.astype(np.uint8).tobytes() if idx.size == 0 or int(idx.max()) < 256 else idx.astype("<i4").tobytes()
    return (zlib.crc32(raw) & 0xFFFF).to_bytes(CHECK_BYTES, "little")


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic cuDNN algorithms while coding: encoder and decoder must compute the same scales."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def verify_check(i: int, indexes: np.ndarray, expected: bytes) -> None:
    """Raise :class:`~tcmcodec.errors.FormatError` unless slice ``i``'s ``indexes`` have the check value
    ``expected``."""
    got = slice_check(indexes)
    if got != expected:
        raise FormatError(
            f"entropy parameters of slice {i} differ from the encoder's (check {expected.hex()}, computed "
            f"{got.hex()}): the file was written by a build or machine that computes them differently, "
            "or not by tcmcodec"
        )
