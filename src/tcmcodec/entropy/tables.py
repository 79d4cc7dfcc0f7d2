"""Integer CDF tables (:class:`CdfTables`) for the range coder of :mod:`tcmcodec.entropy.coder`.

Tables. A :class:`CdfTables` holds K fixed integer tables; table k covers the values
``offsets[k] .. offsets[k] + lengths[k] - 1`` plus an ESCAPE symbol (alphabet index
``lengths[k]``). Each is an integer pmf of ``PRECISION = 24`` bits (``constriction``'s default
range coder): weights >= 1 summing to exactly ``2**24``, the ESCAPE weight at least ``2**8``
(probability ``2**-16``, so an outlier costs at most ~16 bits plus its value's bits, even under a
badly calibrated model). One ``constriction.stream.model.Categorical(weights - 1, perfect=False)``
per table is built ONCE with the set: that quantizer gives every symbol one unit and shares the
other ``2**24 - n`` units in proportion to its float64 input, which here sums to exactly
``2**24 - n``; the scale factor is 1.0, the integer weights are reproduced bit for bit, and encoder
and decoder always build identical models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import constriction
import numpy as np

__all__ = ["PRECISION", "ESCAPE_PRECISION", "MAX_TABLE_LENGTH", "CdfTables"]

_model = constriction.stream.model

PRECISION = 24
"""Bits of probability precision of every table (``constriction``'s default range coder)."""
ESCAPE_PRECISION = 16
"""The ESCAPE symbol has probability at least ``2**-ESCAPE_PRECISION``."""
MAX_TABLE_LENGTH = 1 << 16
"""Largest number of values one table may cover (values beyond are escaped)."""

_TOTAL = 1 << PRECISION
_ESCAPE_MIN_WEIGHT = 1 << (PRECISION - ESCAPE_PRECISION)
_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1


class CdfTables:
    """A set of K fixed integer probability tables, each with an ESCAPE symbol.

    Args:
        weights: K integer arrays; ``weights[k]`` has ``lengths[k] + 1`` entries (the last is the
            ESCAPE weight), every entry >= 1, the sum exactly ``2**PRECISION``.
        offsets: (K,) integers; table k covers values ``offsets[k] .. offsets[k] + len - 1``.
            The range must lie inside int32.

    Raises:
        ValueError: if the weights are not valid integer pmfs or do not match the offsets.
    """

    def __init__(self, weights: Sequence[np.ndarray], offsets: Sequence[int] | np.ndarray) -> None:
        offsets = np.asarray(offsets)
        if offsets.ndim != 1 or len(offsets) != len(weights) or len(weights) == 0:
            raise ValueError(
                f"need one offset per table and at least one table, got {len(weights)} tables "
                f"and offsets of shape {offsets.shape}"
            )
        if offsets.size and not np.issubdtype(offsets.dtype, np.integer):
            raise ValueError(f"offsets must be integers, got dtype {offsets.dtype}")
        clean: list[np.ndarray] = []
        for k, w in enumerate(weights):
            w = np.asarray(w)
            if w.ndim != 1 or w.size < 2 or not np.issubdtype(w.dtype, np.integer):
                raise ValueError(f"table {k}: weights must be a 1-D integer array of >= 2 entries")
            if w.size - 1 > MAX_TABLE_LENGTH:
                raise ValueError(f"table {k}: {w.size - 1} values exceed {MAX_TABLE_LENGTH}")
            w = w.astype(np.int64)
            if w.min() < 1 or int(w.sum()) != _TOTAL:
                raise ValueError(f"table {k}: weights must be >= 1 and sum to 2**{PRECISION}")
            clean.append(w)
        if len(clean) > 65536:
            raise ValueError(f"at most 65536 tables per set, got {len(clean)}")
        lengths = np.array([w.size - 1 for w in clean], dtype=np.int64)
        lo = offsets.astype(np.int64)
        if lo.min() < _INT32_MIN or (lo + lengths - 1).max() > _INT32_MAX:
            raise ValueError("table ranges must lie inside int32")
        self.weights: tuple[np.ndarray, ...] = tuple(clean)
        self.offsets: np.ndarray = lo.astype(np.int32)  # (K,)
        self.lengths: np.ndarray = lengths.astype(np.int32)  # (K,)
        self.highs: np.ndarray = (lo + lengths - 1).astype(np.int32)  # (K,) last covered value
        # One model per table, built once. Passing weights - 1 makes constriction reproduce the
        # integer weights exactly (see the module docstring).
        self.models = tuple(
            _model.Categorical((w - 1).astype(np.float64), perfect=False) for w in clean
        )

    def __len__(self) -> int:
        return len(self.weights)

    def __repr__(self) -> str:
        return f"CdfTables(K={len(self)}, max_length={int(self.lengths.max())})"

    @classmethod
    def from_pmfs(
        cls,
        pmfs: Sequence[np.ndarray],
        offsets: Sequence[int] | np.ndarray,
        tail_masses: Sequence[float] | np.ndarray | None = None,
    ) -> CdfTables:
        """Quantizes float pmfs into integer tables, deterministically.

        Each table gets an ESCAPE weight ``max(ceil(tail * 2**PRECISION), 2**(PRECISION -
        ESCAPE_PRECISION))``; the rest of the ``2**PRECISION`` units go to the values: one unit
        each, the remainder in proportion to the pmf (floor, then largest fractional parts first,
        ties to the lower value). Same float64 input -> same tables, on any run.

        Args:
            pmfs: K 1-D float arrays, ``pmfs[k][i]`` = probability of value ``offsets[k] + i``
                (non-negative; need not sum to one, they are renormalized; an all-zero pmf becomes
                uniform).
            offsets: (K,) integers, the value of each pmf's first entry.
            tail_masses: (K,) probability outside each pmf's range; default ``1 - sum(pmf)``
                clipped at 0.

        Returns:
            The table set.

        Raises:
            ValueError: for non-finite or negative pmfs, mismatched lengths, or tables too long.
        """
        if len(pmfs) != len(np.asarray(offsets).reshape(-1)):
            raise ValueError(f"got {len(pmfs)} pmfs but {np.asarray(offsets).size} offsets")
        if tail_masses is not None and len(tail_masses) != len(pmfs):
            raise ValueError(f"got {len(pmfs)} pmfs but {len(tail_masses)} tail masses")
        weights = []
        for k, pmf in enumerate(pmfs):
            p = np.asarray(pmf, dtype=np.float64).reshape(-1)
            if p.size < 1 or p.size > MAX_TABLE_LENGTH:
                raise ValueError(f"pmf {k}: length {p.size} not in [1, {MAX_TABLE_LENGTH}]")
            if not np.all(np.isfinite(p)) or p.min() < 0:
                raise ValueError(f"pmf {k}: probabilities must be finite and non-negative")
            tail = max(0.0, 1.0 - float(p.sum())) if tail_masses is None else float(tail_masses[k])
            if not math.isfinite(tail) or tail < 0:
                raise ValueError(f"pmf {k}: tail mass must be finite and non-negative")
            escape = min(max(math.ceil(tail * _TOTAL), _ESCAPE_MIN_WEIGHT), _TOTAL // 2)
            free = _TOTAL - escape - p.size
            total = float(p.sum())
            if total <= 0:
                p, total = np.ones_like(p), float(p.size)
            scaled = p * (free / total)
            w = np.floor(scaled).astype(np.int64)
            rest = free - int(w.sum())
            if rest > 0:  # largest fractional parts first (stable: lower value wins ties)
                w[np.argsort(-(scaled - w), kind="stable")[:rest]] += 1
            elif rest < 0:  # float rounding overshoot (tiny): take from the largest entries
                w[np.argsort(-w, kind="stable")[:-rest]] -= 1
            weights.append(np.append(w + 1, escape))
        return cls(weights, np.asarray(offsets).reshape(-1).astype(np.int64))
