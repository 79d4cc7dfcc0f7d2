"""tcmcodec: learned image compression with the TCM model.

Light to import: heavy submodules (torch models, codec) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import FormatError

__version__ = "0.1.0"

_LAZY = {
    "compress": "codec",
    "decompress": "codec",
    "create_model": "zoo",
    "list_models": "zoo",
    "TCM": "models",
    "TCMConfig": "models",
}

__all__ = ["FormatError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'tcmcodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
