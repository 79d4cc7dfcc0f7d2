"""Generalized divisive normalization (Ballé et al. 2016), CompressAI 1.2.8 semantics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._compat import drop_keys
from ..ops import is_channels_last, lower_bound

__all__ = ["GDN"]

_PEDESTAL = (2.0**-18) ** 2
#: Tokens (positions) that the inference path of :class:`GDN` normalises at once: the squares and the
#: norms of a chunk stay in the CPU caches instead of making two whole-map temporaries.
CHUNK_TOKENS = 4096


class GDN(nn.Module):
    """GDN ``y = x / sqrt(beta + gamma * x^2)``, or its inverse IGDN ``y = x * sqrt(...)``.

    ``beta`` (C,) and ``gamma`` (C, C) are stored reparametrized, exactly as CompressAI stores them:
    the effective value is ``max(p, bound)^2 - pedestal`` with ``pedestal = 2^-36`` and
    ``bound = sqrt(minimum + pedestal)``, so official checkpoints load unchanged.

    Args:
        channels: number of channels C.
        inverse: compute IGDN instead of GDN.
        beta_min: lower bound of the effective ``beta``.
        gamma_init: initial diagonal of the effective ``gamma``.
    """

    _DROPPED = (
        "beta_reparam.pedestal",
        "beta_reparam.lower_bound.bound",
        "gamma_reparam.pedestal",
        "gamma_reparam.lower_bound.bound",
    )

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.inverse = bool(inverse)
        self._beta_bound = (beta_min + _PEDESTAL) ** 0.5
        self._gamma_bound = _PEDESTAL**0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + _PEDESTAL))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        channels = x.shape[1]
        beta = lower_bound(self.beta, self._beta_bound) ** 2 - _PEDESTAL  # (C,)
        gamma = lower_bound(self.gamma, self._gamma_bound) ** 2 - _PEDESTAL  # (C, C)
        if not torch.is_grad_enabled() and is_channels_last(x):
            return self._tokens(x, beta, gamma)
        norm = F.conv2d(x * x, gamma.reshape(channels, channels, 1, 1), beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))

    def _tokens(self, x: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
        """Inference on a channels-last map: ``norm = beta + x^2 gamma^T`` per token, a chunk of tokens at
        a time, written into the (channels-last) result and finished there in place (same values as
        the convolution up to float summation order)."""
        c = x.shape[1]
        tokens = x.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, C): a view of channels-last memory
        out = torch.empty_like(x, memory_format=torch.channels_last)
        norms = out.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, C): a view of out
        gamma_t = gamma.t()
        for i in range(0, tokens.shape[0], CHUNK_TOKENS):
            t, n = tokens[i : i + CHUNK_TOKENS], norms[i : i + CHUNK_TOKENS]
            torch.addmm(beta, t * t, gamma_t, out=n)
            (n.sqrt_() if self.inverse else n.rsqrt_()).mul_(t)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        drop_keys(state_dict, prefix, self._DROPPED)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
