"""tcmcodec: learned image compression with the TCM model.

Light to import: heavy submodules (torch models, codec) load on first use. After a plain
``import tcmcodec``, ``tcmcodec.codec``, ``tcmcodec.zoo``, ``tcmcodec.codec.container``, ... are reachable
as attributes (imported on first access).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import FormatError, ResourceError, WeightsError

__version__ = "0.1.0"

_LAZY = {
    "compress": "codec",
    "decompress": "codec",
    "create_model": "zoo",
    "list_models": "zoo",
    "TCM": "models",
    "TCMConfig": "models",
}

#: Submodules imported on first attribute access (``tcmcodec.codec`` without ``import tcmcodec.codec``).
_SUBMODULES = frozenset({
    "cli",
    "codec",
    "entropy",
    "errors",
    "evaluation",
    "layers",
    "models",
    "ops",
    "training",
    "zoo",
})

__all__ = ["FormatError", "ResourceError", "WeightsError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tcmcodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES})
