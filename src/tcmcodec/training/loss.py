"""The training objective and the learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import TrainConfig

__all__ = ["rate_distortion_loss", "lr_factor"]


def rate_distortion_loss(out: dict[str, Any], x: torch.Tensor, lmbda: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """Per-batch loss terms.

    Args:
        out: the model's forward output.
        x: the target images (B, 3, H, W) in [0, 1].
        lmbda: the trade-off per image (B,).
        kind: "mse" or "ms-ssim".

    Returns:
        ``loss``, ``bpp``, ``mse`` (and ``ms_ssim``) as scalars averaged over the batch.
    """
    b, _, h, w = x.shape
    bits = sum(-torch.log2(lik.float()).flatten(1).sum(1) for lik in out["likelihoods"].values())  # (B,)
    bpp = bits / (h * w)
    x_hat = out["x_hat"].float()
    mse = (x_hat - x).pow(2).flatten(1).mean(1)  # (B,)
    terms = {"bpp": bpp.mean(), "mse": mse.mean()}
    if kind == "mse":
        distortion = 255.0**2 * mse
    elif kind == "ms-ssim":
        from pytorch_msssim import ms_ssim

        msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False)  # (B,)
        terms["ms_ssim"] = msssim.mean()
        distortion = 1 - msssim
    else:
        raise ValueError(f"unknown loss {kind!r}")
    terms["loss"] = (lmbda * distortion + bpp).mean()
    return terms


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at a step (warm-up, then multistep or cosine)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))
    return 0.1 if step >= int(0.9 * cfg.steps) else 1.0
