"""Loading weights files (ours, ``tcm train`` checkpoints, official TCM checkpoints) and their fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import get_preset, list_models

if TYPE_CHECKING:  # torch is heavy: imported only when a model is built
    from tcmcodec.models import TCM

__all__ = ["load_checkpoint", "weights_id"]


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

    from tcmcodec.models import TCM, TCMConfig

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
            elif preset_name in list_models():
                config = get_preset(preset_name).config
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
    except pickle.UnpicklingError:  # not a torch file, or one that holds more than tensors (code): refused
        raise ValueError(f"cannot load checkpoint {path}: not a safetensors file or a torch checkpoint of plain "
                         "tensors") from None
    except Exception as e:  # noqa: BLE001 - unreadable file or mismatched tensors: a bad checkpoint
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot load checkpoint {path}: {first}") from None
    model.preset_name = preset_name
    return model.to(device).eval()
