"""Turning a training checkpoint into shipped weights: quantile fitting and fp16 safetensors export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tcmcodec._fileio import write_atomic

if TYPE_CHECKING:
    from tcmcodec.models import TCM

__all__ = ["fit_quantiles", "export_weights"]


def fit_quantiles(model: "TCM", steps: int = 3000, lr: float = 0.1) -> float:
    """Finish fitting the factorized prior's quantiles (the auxiliary loss) with the rest frozen.

    The auxiliary loss converges slowly next to the main loss; short runs end with loose tails,
    which only widens z's coding tables. This touches nothing but ``entropy_bottleneck.quantiles``.

    Args:
        model: the model (modified in place).
        steps: Adam steps on the auxiliary loss.
        lr: their learning rate.

    Returns:
        The final auxiliary loss.
    """
    import torch

    quantiles = model.entropy_bottleneck.quantiles
    opt = torch.optim.Adam([quantiles], lr=lr)
    for _ in range(steps):
        loss = model.aux_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(model.aux_loss().detach())


def export_weights(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    fp16: bool = True,
    note: dict | None = None,
    quantile_steps: int = 0,
    ema: bool = False,
) -> Path:
    """Write a checkpoint's model as (fp16) safetensors with its config and training record as metadata.

    Args:
        checkpoint: a ``tcm train`` checkpoint (``.pt``).
        out: the ``.safetensors`` file to write.
        fp16: store the large tensors as float16 (halves the size; loading upcasts to float32).
            Tensors under 4096 values (biases, norms, gains, the factorized prior) stay float32.
        note: extra metadata (e.g. the training budget), stored as JSON under ``"training"``.
        quantile_steps: when > 0, first run ``fit_quantiles`` for this many steps.
        ema: export the moving average of the weights (a run with ``--ema``) instead of the weights.

    Raises:
        ValueError: ``ema`` for a checkpoint without a moving average.
    """
    import torch

    from tcmcodec.models import TCM, TCMConfig

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if ema and "ema" not in ckpt:
        raise ValueError(f"{checkpoint} holds no moving average of the weights (train with --ema)")
    state = ckpt["ema"]["model"] if ema else ckpt["model"]
    if quantile_steps:
        model = TCM(TCMConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(state)
        fit_quantiles(model, quantile_steps)
        state = model.state_dict()
    tensors = {
        k: v.to(torch.float16 if fp16 and v.numel() >= 4096 else torch.float32).contiguous() for k, v in state.items()
    }
    meta = {"config": json.dumps(ckpt["model_config"]), "preset": ckpt.get("preset", ""), "step": str(ckpt["step"])}
    if note:
        meta["training"] = json.dumps(note)
    from safetensors.torch import save

    return write_atomic(out, save(tensors, metadata=meta))
