"""Named model presets (timm-style): one :class:`Preset` per model, each holding its ``TCMConfig``."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tcmcodec.models.config import TCMConfig

__all__ = ["Preset", "register", "get_preset", "list_models"]

_REGISTRY: dict[str, "Preset"] = {}


@dataclass(frozen=True)
class Preset:
    """A named model configuration, optionally with shipped weights.

    Args:
        name: registry name, e.g. ``"tcm-s"``.
        config: the model's hyper-parameters.
        description: one line for ``tcm models`` / docs.
        weights: file name of shipped weights in ``tcmcodec/zoo/weights`` (safetensors), or None.
        default_quality: the quality used when none is given (continuous-rate presets).
    """

    name: str
    config: TCMConfig
    description: str
    weights: str | None = None
    default_quality: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, TCMConfig):
            raise TypeError(f"config must be a TCMConfig, got {type(self.config).__name__}")

    @property
    def levels(self) -> int:
        """Gain levels L (qualities 1..L) of a continuous-rate preset; 0 for a fixed-rate one."""
        return self.config.num_gains

    @property
    def continuous_rate(self) -> bool:
        return self.levels > 0

    def weights_path(self) -> Path | None:
        """Path of the shipped weights, or None when the preset ships none (or the file is missing)."""
        if self.weights is None:
            return None
        path = Path(str(resources.files("tcmcodec.zoo") / "weights" / self.weights))
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
