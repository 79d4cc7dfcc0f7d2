"""The model presets shipped with tcmcodec, and ``create_model``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tcmcodec.models.config import TCMConfig

from .checkpoints import load_checkpoint
from .registry import Preset, PublishedWeights, get_preset, list_models, register

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
        quality: continuous-rate presets: the default quality (``model.default_quality``), in [1, L].
            Fixed-rate presets with published checkpoints: which checkpoint ``pretrained`` loads
            (``tcm-s``: 1..6 for lambda 0.0025..0.05; None: the preset's default). Other fixed-rate
            presets take none (their rate is set by the weights).
        pretrained: load the preset's shipped weights, or its published checkpoint (downloaded into
            the cache on first use, see :mod:`tcmcodec.zoo.hub`); ValueError if it has neither.
        checkpoint: load these weights instead (see ``load_checkpoint``); must fit the preset.
        device: torch device.

    Returns:
        The model in eval mode; coding tables are built on first use from the loaded weights.
    """
    from tcmcodec.models import TCM

    preset = get_preset(name)
    if pretrained and checkpoint is not None:
        raise ValueError("pass either pretrained=True or checkpoint, not both")
    if preset.published and pretrained:
        from .hub import fetch_weights

        weights = preset.published_weights(quality)  # ValueError naming the choices
        model = load_checkpoint(fetch_weights(preset, weights.quality), device)
        model.preset_name, model.default_quality = name, None
        model.published_quality = weights.quality
        return model
    if quality is not None:
        if not preset.continuous_rate:
            raise ValueError(f"{name} is a fixed-rate model: choose the rate with its checkpoint, not quality")
        quality = preset.config.check_quality(quality)
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


#: The authors' MSE checkpoints (https://github.com/jmliu206/LIC_TCM, README "Pretrained Model"): lambda
#: and Google Drive file id. Qualities 1..6 are the paper's six lambdas.
_LAMBDAS = (0.0025, 0.0035, 0.0067, 0.013, 0.025, 0.05)
_DRIVE_S = ("1zpkW_MCkUWl8nRUlza0L7Fk7dXlXciZd", "1x2rfIQAv8RsjM3zEByDdOZJtEcPU5XZT", "17THA1IiPStSO6jG4h5clwkw0ySzgLZID",
            "1UbfQFsrr-Z6SrvZvpX4p1QPta5FCORZ5", "1rc4E2Rke1Jd8UnLq73NaXbfAdcBGGPKg", "1Quz6_jGJyaG6LMUbT4JuOhhQWxJN26Kh")
_DRIVE_L = {6: "1TK-CPiD2QwtWJqZoT_OyCtnxdQ7UNP56"}


def _drive(name: str, quality: int, file_id: str) -> PublishedWeights:
    lmbda = _LAMBDAS[quality - 1]
    return PublishedWeights(
        quality=quality, lmbda=lmbda, url=f"https://drive.google.com/uc?id={file_id}",
        filename=f"{name}-q{quality}-mse-{lmbda:g}.pth.tar", page=f"https://drive.google.com/file/d/{file_id}/view",
    )


register(Preset(
    "tcm-s", TCMConfig(N=64), "TCM small (N=64, M=320), the paper's S model; 45.2 M parameters; "
    "the authors' 6 checkpoints (quality 1..6), downloaded on first use",
    default_quality=3, published=tuple(_drive("tcm-s", q, i) for q, i in enumerate(_DRIVE_S, 1)),
))
register(Preset("tcm-m", TCMConfig(N=96), "TCM middle (N=96, M=320), the paper's M model; 59.1 M parameters"))
register(Preset(
    "tcm-l", TCMConfig(N=128), "TCM large (N=128, M=320); 76.6 M parameters; the authors' checkpoint "
    "(quality 6, lambda 0.05), downloaded on first use",
    default_quality=6, published=tuple(_drive("tcm-l", q, i) for q, i in _DRIVE_L.items()),
))
register(
    Preset(
        "tcm-xs",
        TCMConfig(
            N=32, M=160, z_channels=128, num_slices=4, max_support_slices=4,
            depths=(2, 2, 2, 2, 2, 2), head_dims=(16, 16, 16, 16, 16, 16), window=8,
            hyper_depth=2, hyper_head_dim=16, hyper_window=4,
            atten_inter_dim=48, atten_head_dim=16, atten_window=8, cc_hidden=(64, 48), num_gains=8,
            haar_shortcuts=True,
        ),
        "Compact continuous-rate TCM (N=32, M=160, 4 slices, quality 1..8) with Haar shortcuts beside g_a / g_s; "
        "8.0 M parameters, 127 kMAC/pixel",
        weights="tcm-xs.safetensors",
        default_quality=4.0,
    )
)
