"""Model families.

``TCMConfig`` (torch-free) is imported eagerly; the torch modules load on first attribute access, so
the registry and the CLI can read configurations without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import TCMConfig

_LAZY = {
    "TCM": "tcm",
    "ModelStreams": "streams",
    "GainUnit": "gain",
    "LAMBDAS": "gain",
    "LAMBDAS_MSSSIM": "gain",
    "quality_to_lambda": "gain",
}

__all__ = ["TCMConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
