"""Compatibility with official (CompressAI-based) TCM checkpoints."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

__all__ = ["drop_keys"]


def drop_keys(state_dict: MutableMapping, prefix: str, names: Iterable[str]) -> None:
    """Remove ``prefix + name`` from ``state_dict`` for every name that is present.

    Modules call this from ``_load_from_state_dict`` to ignore CompressAI's coding and constant
    buffers (for example ``_quantized_cdf`` or ``likelihood_lower_bound.bound``), which we rebuild
    or hard-code instead of storing.

    Args:
        state_dict: the mapping being loaded (modified in place).
        prefix: the module's key prefix, as passed to ``_load_from_state_dict``.
        names: key suffixes to drop.
    """
    for name in names:
        state_dict.pop(prefix + name, None)
