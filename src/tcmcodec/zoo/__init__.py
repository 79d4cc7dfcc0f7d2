"""Model zoo: the preset registry, ``create_model``, checkpoint loading and the shipped weights.

::

    from tcmcodec import zoo

    model = zoo.create_model("tcm-xs", pretrained=True)   # shipped weights
    model = zoo.load_checkpoint("checkpoint_best_loss.pth.tar")   # official TCM weights
"""

from __future__ import annotations

from .checkpoints import load_checkpoint, weights_id
from .export import export_weights, fit_quantiles
from .presets import create_model
from .registry import Preset, get_preset, list_models, register

__all__ = [
    "Preset", "register", "get_preset", "list_models", "create_model", "load_checkpoint", "weights_id",
    "fit_quantiles", "export_weights",
]
