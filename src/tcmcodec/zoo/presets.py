"""The model presets shipped with tcmcodec, and ``create_model``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tcmcodec.models.config import TCMConfig

from .checkpoints import load_checkpoint
from .registry import Preset, get_preset, list_models, register

if TYPE_CHECKING:
    from tcmcodec.models import TCM

__all__ = ["create_model"]


def create_model(
    name: str,
    quality: float | None = None,
    pretrained: bool = False,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
) -> "TCM":
    """Build a registered model.

    Args:
        name: preset name (see ``list_models()``).
        quality: default quality for continuous-rate presets (``model.default_quality``), in [1, 8].
            Fixed-rate presets take no quality here (their rate is set by the weights).
        pretrained: load the preset's shipped weights (ValueError if it ships none).
        checkpoint: load these weights instead (see ``load_checkpoint``); must fit the preset.
        device: torch device.

    Returns:
        The model in eval mode; coding tables are built on first use from the loaded weights.
    """
    from tcmcodec.models import TCM

    preset = get_preset(name)
    if quality is not None:
        if not preset.continuous_rate:
            raise ValueError(f"{name} is a fixed-rate model: choose the rate with its checkpoint, not quality")
        quality = preset.config.check_quality(quality)
    if pretrained and checkpoint is not None:
        raise ValueError("pass either pretrained=True or checkpoint, not both")
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, device)
        if model.config != preset.config:
            raise ValueError(f"checkpoint {checkpoint} does not have the {name} architecture")
    elif pretrained:
        path = preset.weights_path()
        if path is None:
            raise ValueError(
                f"no shipped weights for {name}; pretrained models: {', '.join(list_models(True)) or 'none'}"
                " (pass checkpoint=PATH for an official or trained checkpoint)"
            )
        model = load_checkpoint(path, device)
    else:
        model = TCM(preset.config).to(device).eval()
    model.preset_name = name
    model.default_quality = float(quality) if quality is not None else preset.default_quality
    return model


register(Preset("tcm-s", TCMConfig(N=64), "TCM small (N=64, M=320), the paper's S model; 45.2 M parameters"))
register(Preset("tcm-m", TCMConfig(N=96), "TCM middle (N=96, M=320), the paper's M model; 59.1 M parameters"))
register(Preset("tcm-l", TCMConfig(N=128), "TCM large (N=128, M=320), the official checkpoint's model; 76.6 M parameters"))
register(
    Preset(
        "tcm-xs",
        TCMConfig(
            N=32, M=160, z_channels=128, num_slices=4, max_support_slices=4,
            depths=(2, 2, 2, 2, 2, 2), head_dims=(16, 16, 16, 16, 16, 16), window=8,
            hyper_depth=2, hyper_head_dim=16, hyper_window=4,
            atten_inter_dim=48, atten_head_dim=16, atten_window=8, cc_hidden=(64, 48), num_gains=8,
        ),
        "Compact continuous-rate TCM (N=32, M=160, 4 slices, quality 1..8); 7.9 M parameters, 129 kMAC/pixel",
        weights="tcm-xs.safetensors",
        default_quality=4.0,
    )
)
