"""Registry of named model presets and their shipped weights (timm-style ``create_model``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is heavy: imported only when a model is built
    from .models import TCM, TCMConfig

__all__ = [
    "Preset", "register", "get_preset", "list_models", "create_model", "load_checkpoint", "weights_id",
    "fit_quantiles", "export_weights",
]

_REGISTRY: dict[str, "Preset"] = {}


@dataclass(frozen=True)
class Preset:
    """A named model configuration, optionally with shipped weights.

    Args:
        name: registry name, e.g. ``"tcm-s"``.
        config: keyword arguments of ``TCMConfig``.
        description: one line for ``tcm models`` / docs.
        weights: file name of shipped weights in ``tcmcodec/weights`` (safetensors), or None.
        default_quality: the quality used when none is given (continuous-rate presets).
    """

    name: str
    config: dict[str, Any]
    description: str
    weights: str | None = None
    default_quality: float | None = None

    def tcm_config(self) -> "TCMConfig":
        from .models import TCMConfig

        return TCMConfig(**self.config)

    @property
    def continuous_rate(self) -> bool:
        return self.config.get("num_gains", 0) > 0

    def weights_path(self) -> Path | None:
        """Path of the shipped weights, or None when the preset ships none (or the file is missing)."""
        if self.weights is None:
            return None
        path = Path(str(resources.files("tcmcodec") / "weights" / self.weights))
        return path if path.is_file() else None


def register(preset: Preset) -> Preset:
    """Add a preset to the registry (names are unique)."""
    if preset.name in _REGISTRY:
        raise ValueError(f"preset {preset.name!r} is already registered")
    _REGISTRY[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def list_models(pretrained: bool = False) -> list[str]:
    """Names of the registered presets.

    Args:
        pretrained: only those with shipped weights present in this installation.
    """
    return sorted(n for n, p in _REGISTRY.items() if not pretrained or p.weights_path() is not None)


def weights_id(model: "TCM") -> bytes:
    """An 8-byte fingerprint of a model's weights (SHA-256 over names, shapes and float32 values)."""
    import torch

    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.digest()[:8]


def _load_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key).float()
    return tensors, metadata


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> "TCM":
    """Build a model from a weights file.

    Accepts our ``.safetensors`` (its metadata ``"config"`` holds the ``TCMConfig`` as JSON, and
    ``"preset"`` the preset name), a training checkpoint of ``tcm train`` (``.pt``, with ``"model"``
    and ``"config"``), or an official TCM checkpoint (``.pth.tar``: N, M and slices are inferred).

    Args:
        path: the file.
        device: where to put the model.

    Returns:
        The model in eval mode, with ``model.preset_name`` set when known.
    """
    import torch

    from .models import TCM, TCMConfig

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    preset_name = None
    try:
        if path.suffix == ".safetensors":
            tensors, meta = _load_safetensors(path)
            preset_name = meta.get("preset") or None
            if "config" in meta:
                config = TCMConfig.from_dict(json.loads(meta["config"]))
            elif preset_name in _REGISTRY:
                config = _REGISTRY[preset_name].tcm_config()
            else:
                config = None  # inferred from the shapes (reference family)
            model = TCM.from_state_dict(tensors, config)
        else:
            # weights_only: a checkpoint is data, never code (no arbitrary unpickling).
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and "model" in obj and "model_config" in obj:  # tcm train checkpoint
                model = TCM.from_state_dict(obj["model"], TCMConfig.from_dict(obj["model_config"]))
                preset_name = obj.get("preset")
            else:
                model = TCM.from_state_dict(obj)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable file or mismatched tensors: a bad checkpoint
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot load checkpoint {path}: {first}") from None
    model.preset_name = preset_name
    return model.to(device).eval()


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
    from .models import TCM

    preset = get_preset(name)
    if quality is not None:
        if not preset.continuous_rate:
            raise ValueError(f"{name} is a fixed-rate model: choose the rate with its checkpoint, not quality")
        levels = preset.config["num_gains"]
        if not 1 <= float(quality) <= levels:
            raise ValueError(f"quality must be in [1, {levels}], got {quality}")
    if pretrained and checkpoint is not None:
        raise ValueError("pass either pretrained=True or checkpoint, not both")
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, device)
        if model.config != preset.tcm_config():
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
        model = TCM(preset.tcm_config()).to(device).eval()
    model.preset_name = name
    model.default_quality = float(quality) if quality is not None else preset.default_quality
    return model


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
) -> Path:
    """Write a checkpoint's model as (fp16) safetensors with its config and training record as metadata.

    Args:
        checkpoint: a ``tcm train`` checkpoint (``.pt``).
        out: the ``.safetensors`` file to write.
        fp16: store the large tensors as float16 (halves the size; loading upcasts to float32).
            Tensors under 4096 values (biases, norms, gains, the factorized prior) stay float32.
        note: extra metadata (e.g. the training budget), stored as JSON under ``"training"``.
        quantile_steps: when > 0, first run ``fit_quantiles`` for this many steps.
    """
    import torch
    from safetensors.torch import save_file

    from .models import TCM, TCMConfig

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = ckpt["model"]
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
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------- presets
register(Preset("tcm-s", dict(N=64), "TCM small (N=64, M=320), the paper's S model; 45.2 M parameters"))
register(Preset("tcm-m", dict(N=96), "TCM middle (N=96, M=320), the paper's M model; 59.1 M parameters"))
register(Preset("tcm-l", dict(N=128), "TCM large (N=128, M=320), the official checkpoint's model; 76.6 M parameters"))
register(
    Preset(
        "tcm-xs",
        dict(
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
