"""Small differentiable operations shared by layers and entropy models."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["lower_bound", "ste_round", "to_symbols", "cat_as", "is_channels_last"]

_INT32_LOW = -2147483648.0
_INT32_HIGH = 2147483520.0  # largest float32 below 2**31


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows when it would push ``x`` up to the bound."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad < 0)
        return pass_through.to(grad.dtype) * grad, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """Elementwise ``max(x, bound)`` with CompressAI's ``LowerBound`` gradient.

    Args:
        x: input tensor.
        bound: the floor.

    Returns:
        A tensor like ``x``.
    """
    b = torch.tensor(bound, dtype=x.dtype, device=x.device)
    if not x.requires_grad:
        return torch.max(x, b)
    return _LowerBound.apply(x, b)


def ste_round(residual: Tensor, value: Tensor) -> Tensor:
    """Straight-through rounding of ``residual = value - mean``: ``round(residual) - residual.detach() + value``.

    The forward value is ``round(residual) + mean``; the gradient flows to ``value`` as if nothing were
    rounded (CompressAI's expression, kept bit for bit).

    Args:
        residual: ``value - mean``.
        value: the tensor the gradient flows to.

    Returns:
        A tensor like ``value``.
    """
    return torch.round(residual) - residual.detach() + value


def to_symbols(residual: Tensor) -> np.ndarray:
    """``round(residual)`` as int32 numpy, saturating at the int32 range (finite input only).

    Raises:
        ValueError: if ``residual`` holds a non-finite value.
    """
    if not bool(torch.isfinite(residual).all()):
        raise ValueError("cannot code non-finite latents")
    r = torch.round(residual.detach()).clamp_(_INT32_LOW, _INT32_HIGH)
    return r.to(torch.int32).cpu().numpy()


def cat_as(slices: list[Tensor], dtype: torch.dtype) -> Tensor:
    """``torch.cat(slices, 1).to(dtype)`` without the concatenated copy in the slices' dtype: each slice is
    converted into its place and released (the list is emptied)."""
    first = slices[0]
    out = first.new_empty(first.shape[0], sum(t.shape[1] for t in slices), *first.shape[2:], dtype=dtype)
    c = 0
    while slices:
        t = slices.pop(0)
        out[:, c : c + t.shape[1]] = t
        c += t.shape[1]
    return out


def is_channels_last(x: Tensor) -> bool:
    """True when ``x`` is a (B, C, H, W) map stored channels-last and not also plainly contiguous (the two
    coincide when C == 1 or H == W == 1), i.e. when its NHWC tokens are a view."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
