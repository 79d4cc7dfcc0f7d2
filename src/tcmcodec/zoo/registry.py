"""Named model presets (timm-style): one :class:`Preset` per model, each holding its ``TCMConfig``."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tcmcodec.models.config import TCMConfig

__all__ = ["PublishedWeights", "Preset", "register", "get_preset", "list_models"]

_REGISTRY: dict[str, "Preset"] = {}


@dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint of a fixed-rate preset, fetched on first use (see ``zoo.hub``).

    Args:
        quality: the quality index that selects it (``--quality``), 1..6 for the paper's lambdas.
        lmbda: the rate-distortion lambda it was trained with.
        url: where to download it (a Google Drive link or any HTTP(S) URL).
        filename: its file name in the weights cache.
        page: the page a user can open to download it by hand.
        sha256: hex SHA-256 of the file, once recorded (None: verified by loading, and by the checksum
            written beside the cached file on first download).
    """

    quality: int
    lmbda: float
    url: str
    filename: str
    page: str = ""
    sha256: str | None = None


@dataclass(frozen=True)
class Preset:
    """A named model configuration, optionally with shipped weights.

    Args:
        name: registry name, e.g. ``"tcm-s"``.
        config: the model's hyper-parameters.
        description: one line for ``tcm models`` / docs.
        weights: file name of shipped weights in ``tcmcodec/zoo/weights`` (safetensors), or None.
        default_quality: the quality used when none is given (continuous-rate presets, and
            fixed-rate presets with published checkpoints).
        published: fixed-rate presets: the authors' checkpoints, one per quality, downloaded on use.
    """

    name: str
    config: TCMConfig
    description: str
    weights: str | None = None
    default_quality: float | None = None
    published: tuple[PublishedWeights, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.config, TCMConfig):
            raise TypeError(f"config must be a TCMConfig, got {type(self.config).__name__}")
        if self.published and self.continuous_rate:
            raise ValueError("published checkpoints per quality are for fixed-rate presets")
        if len({w.quality for w in self.published}) != len(self.published):
            raise ValueError(f"{self.name}: two published checkpoints with the same quality")

    def published_weights(self, quality: float | None) -> PublishedWeights:
        """The published checkpoint for ``quality`` (None: the default); ValueError naming the choices."""
        if not self.published:
            raise ValueError(f"{self.name} has no published checkpoints")
        q = self.default_quality if quality is None else quality
        for w in self.published:
            if q == w.quality:
                return w
        choices = ", ".join(f"{w.quality} (lambda {w.lmbda:g})" for w in self.published)
        raise ValueError(f"{self.name} has published checkpoints at quality {choices}; got {quality:g}")

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
        pretrained: only those with weights: shipped in this installation, or published (downloaded on use).
    """
    return sorted(n for n, p in _REGISTRY.items()
                  if not pretrained or p.weights_path() is not None or p.published)
