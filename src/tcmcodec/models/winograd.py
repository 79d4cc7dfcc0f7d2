"""3x3 convolutions by Winograd's minimal filtering, F(2x2, 3x3), for the float64 entropy parameters.

PyTorch's CPU float64 convolution unfolds its input (im2col: 9 values per input value) and
multiplies by the weights: 9 multiply-adds per input channel and output value. Winograd's
algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016) computes
each 2x2 block of outputs from a 4x4 input tile in a transformed domain where the convolution is 16
independent matrix products: 4 multiply-adds per input channel and output value, 2.25x fewer, and
the transformed input is 4 values per input value instead of 9.

F(2x2, 3x3) with the interpolation points 0, 1, -1 (and infinity) has transform matrices of 0, ±1
and ±1/2 only: every transform is exact or one rounding, so its float64 error stays at the level
of the direct convolution's (~5e-15 relative in tests/models/test_winograd.py, where the direct
convolution's thread counts alone differ by ~3e-15). Larger tiles, F(4x4, 3x3), cut the products
4x but multiply the error by ~30 (1e-13), eroding the margin that makes every machine pick the same
coding tables (``models.params``): not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TILE", "filters", "conv3x3"]

#: Output tile side m of F(m x m, 3x3); input tiles are m + 2 a side.
TILE = 2
#: Filter transform G (4, 3); the input transform B^T and the output transform A^T are written out
#: as additions in :func:`_transform_in` and :func:`_transform_out`.
_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))


def filters(weight: Tensor) -> Tensor:
    """The transformed filters ``G g G^T`` of 3x3 weights, one matrix per tile position.

    Args:
        weight: (C_out, C_in, 3, 3) convolution weights.

    Returns:
        (16, C_out, C_in): slicing its last axis selects input channels, as slicing ``weight``'s second does.
    """
    if weight.dim() != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"expected (C_out, C_in, 3, 3) weights, got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
    u = g @ weight @ g.T  # (C_out, C_in, 4, 4)
    return u.permute(2, 3, 0, 1).reshape(16, weight.shape[0], weight.shape[1]).contiguous()


def conv3x3(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """A 3x3 'valid' convolution (stride 1) of ``x`` with transformed filters ``u`` (:func:`filters`).

    Args:
        x: (B, C_in, H + 2, W + 2) input, already padded by one row and column on every side for a
            'same' convolution of an H x W map.
        u: (16, C_out, C_in) transformed filters.
        bias: (C_out,) or None.

    Returns:
        (B, C_out, H, W): equal to ``F.conv2d(x, weight, bias)`` up to float rounding.
    """
    b, c, hp, wp = x.shape
    h, w = hp - 2, wp - 2
    nh, nw = -(-h // 2), -(-w // 2)  # 2x2 output tiles down and across
    x = F.pad(x, (0, 2 * nw - w, 0, 2 * nh - h))  # whole tiles; the extra outputs are cropped
    # B^T d B of every 4x4 input tile (stride 2), the rows first: additions of strided slices of the
    # whole map, written straight into the (16, C, T) layout of the products (T = B * nh * nw).
    rows = _transform_in(x.transpose(0, 1), 2, nh)  # (4, C, B, nh, W + 2)
    v = x.new_empty(4, 4, c, b, nh, nw)
    for i in range(4):
        _transform_in(rows[i], 3, nw, out=v[i])
    m = torch.bmm(u, v.view(16, c, b * nh * nw)).view(4, 4, -1, b, nh, nw)  # (4, 4, C_out, B, nh, nw)
    # A^T m A: rows, then columns; then the 2x2 outputs of each tile into place.
    y = _transform_out(_transform_out(m, 0), 1)  # (2, 2, C_out, B, nh, nw)
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(b, -1, 2 * nh, 2 * nw)[:, :, :h, :w]
    y = y.contiguous()  # (B, C_out, H, W)
    return y if bias is None else y.add_(bias.view(1, -1, 1, 1))


def _transform_in(t: Tensor, dim: int, n: int, out: Tensor | None = None) -> Tensor:
    """B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] along ``dim`` of ``t`` for the n
    tiles (stride 2) of that axis: (4, *t.shape with that axis n)."""
    def d(k: int) -> Tensor:  # element k of every tile along dim: positions k, k + 2, ..., k + 2 (n - 1)
        return t.narrow(dim, k, 2 * n - 1)[(slice(None),) * dim + (slice(None, None, 2),)]

    d0, d1, d2, d3 = d(0), d(1), d(2), d(3)
    if out is None:
        out = t.new_empty(4, *d0.shape)
    torch.sub(d0, d2, out=out[0])
    torch.add(d1, d2, out=out[1])
    torch.sub(d2, d1, out=out[2])
    torch.sub(d1, d3, out=out[3])
    return out


def _transform_out(m: Tensor, dim: int) -> Tensor:
    """A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] along axis ``dim`` (of size 4) of ``m``: that axis becomes 2."""
    m0, m1, m2, m3 = m.unbind(dim)
    return torch.stack((m0 + m1 + m2, m1 - m2 - m3), dim)
