"""The models the codec codes with: resolving a preset name / checkpoint / instance, a small cache of
loaded models, and the per-model facts the header records (name, weights fingerprint, quality)."""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from tcmcodec.codec import container as bitstream

if TYPE_CHECKING:  # torch is imported when a model is needed
    import torch

    from tcmcodec.models import TCM

__all__ = ["ModelArg", "MODEL_CACHE_SIZE", "CUSTOM_MODEL_NAME", "MAX_FIXED_RATE_QUALITY", "clear_model_cache",
           "resolve", "model_name", "model_device", "weights_id", "model_levels", "check_quality"]

#: Header model name of a model that is not a registered preset.
CUSTOM_MODEL_NAME = "custom"
#: Models kept loaded by the module-level functions.
MODEL_CACHE_SIZE = 3

ModelArg = Union[str, "TCM", None]

_cache: OrderedDict[tuple, "TCM"] = OrderedDict()
_cache_lock = threading.Lock()
_weights_ids: "weakref.WeakKeyDictionary[Any, tuple[tuple, bytes]]" = weakref.WeakKeyDictionary()
_weights_lock = threading.Lock()


def clear_model_cache() -> None:
    """Forget the models loaded by the module-level functions."""
    with _cache_lock:
        _cache.clear()


def _checkpoint_key(checkpoint: str | os.PathLike | None) -> tuple | None:
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    try:
        st = path.stat()
    except OSError:
        return (str(path),)  # loading reports the error
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _published_quality(name: str | None, checkpoint: str | os.PathLike | None, quality: float | None) -> int | None:
    """The published checkpoint's quality that preset ``name`` loads at ``quality``; None when the preset
    has no published checkpoints or ``checkpoint`` is given. ValueError for a quality it has none at."""
    if name is None or checkpoint is not None:
        return None
    from tcmcodec import zoo

    preset = zoo.get_preset(name)
    return preset.published_weights(quality).quality if preset.published else None


def _load_model(
    name: str | None, checkpoint: str | os.PathLike | None, device: str, published: int | None = None
) -> "TCM":
    """Build a model: preset ``name`` with its shipped weights, its published checkpoint of quality
    ``published``, or ``checkpoint``; or just ``checkpoint``."""
    from tcmcodec import zoo

    if name is None:
        if checkpoint is None:
            raise ValueError("need a model name or a checkpoint")
        model = zoo.load_checkpoint(checkpoint, device)
        preset_name = getattr(model, "preset_name", None)
        preset = zoo.get_preset(preset_name) if preset_name in zoo.list_models() else None
        if preset is not None and model.config != preset.config:
            model.preset_name, preset = None, None  # the file's preset tag does not fit its tensors
        model.default_quality = preset.default_quality if preset is not None and not preset.published else None
        return model
    if checkpoint is None:
        return zoo.create_model(name, quality=published, pretrained=True, device=device)
    return zoo.create_model(name, checkpoint=checkpoint, device=device)


def _cached_model(
    name: str | None, checkpoint: str | os.PathLike | None, device: str, published: int | None
) -> "TCM":
    key = (name, _checkpoint_key(checkpoint), str(device), published)
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            _cache.move_to_end(key)
            return model
        model = _load_model(name, checkpoint, device, published)
        _cache[key] = model
        while len(_cache) > MODEL_CACHE_SIZE:
            _cache.popitem(last=False)
        return model


def resolve(
    model: ModelArg, checkpoint: str | os.PathLike | None, device: str, cached: bool, quality: float | None = None
) -> "TCM":
    """The model to code with: an instance as it is, else preset ``model`` and/or ``checkpoint`` loaded
    (``cached``: through the module's small cache). ``quality`` picks the checkpoint of a preset with
    published checkpoints (``tcm-s``: one per quality); other models ignore it here."""
    if model is not None and not isinstance(model, str):
        from tcmcodec.models import TCM

        if not isinstance(model, TCM):
            raise TypeError(f"model must be a preset name or a TCM instance, got {type(model).__name__}")
        if checkpoint is not None:
            raise ValueError("pass either a model instance or a checkpoint, not both")
        return model
    if model is not None:
        from tcmcodec import zoo

        zoo.get_preset(model)  # ValueError listing the known names
    published = _published_quality(model, checkpoint, quality)
    if cached:
        return _cached_model(model, checkpoint, device, published)
    return _load_model(model, checkpoint, device, published)


def model_device(model: "TCM") -> "torch.device":
    return next(model.parameters()).device


def model_name(model: "TCM") -> str:
    name = getattr(model, "preset_name", None)
    if isinstance(name, str):
        try:
            bitstream.Header(model=name, weights_id=None, quality=0.0, height=1, width=1)
            return name
        except ValueError:
            pass
    return CUSTOM_MODEL_NAME


def weights_id(model: "TCM") -> bytes:
    """``zoo.weights_id(model)``, cached per model instance until its weights change."""
    from tcmcodec import zoo
    from tcmcodec.models.params import version_key

    key = version_key(model)
    with _weights_lock:
        hit = _weights_ids.get(model)
        if key is not None and hit is not None and hit[0] == key:
            return hit[1]
    wid = zoo.weights_id(model)
    if wid == bytes(len(wid)):  # pragma: no cover - 2**-64; the header reserves all-zero for "unknown"
        wid = b"\x01" + wid[1:]
    if key is not None:
        with _weights_lock:
            _weights_ids[model] = (key, wid)
    return wid


def model_levels(model: "TCM") -> int:
    return int(model.config.num_gains)


#: Header quality of fixed-rate models: 0, or the quality of the published checkpoint (a whole number).
MAX_FIXED_RATE_QUALITY = 16


def check_quality(model: "TCM", quality: float | None) -> float:
    """The header quality of ``model`` at ``quality``: for continuous-rate models the validated (or
    default) quality; for a published fixed-rate checkpoint its quality (``quality`` must be None or
    that); for other fixed-rate models 0.0 (``quality`` must be None). Raises ``ValueError`` (quality out
    of range, or not the model's) or ``TypeError`` (not a number)."""
    levels = model_levels(model)
    if not levels:
        published = getattr(model, "published_quality", None)
        if published is not None and (quality is None or quality == published):
            return float(published)
        if published is not None:
            raise ValueError(f"this {model_name(model)} model is the quality {published} checkpoint, got {quality:g}")
        if quality is not None:
            raise ValueError(
                f"{model_name(model)} is a fixed-rate model: it takes no quality (its checkpoint sets the rate)"
            )
        return 0.0
    if quality is None:
        quality = getattr(model, "default_quality", None)
        if quality is None:
            quality = float(math.ceil((1 + levels) / 2))
    return model.config.check_quality(quality)
