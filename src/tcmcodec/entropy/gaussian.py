"""Gaussian conditional entropy model (CompressAI ``GaussianConditional`` semantics).

The likelihood of an integer residual ``v`` under a zero-mean Gaussian of scale ``s`` is
``Phi((0.5 - |v|) / s) - Phi((-0.5 - |v|) / s)`` with ``s = max(scale, scale_bound)``, floored at
``1e-9``; ``Phi(x) = 0.5 * erfc(-x / sqrt(2))`` exactly as CompressAI computes it. For coding, each
scale is mapped to one of the entries of a fixed scale table (CompressAI's rule: the index is the
number of entries among all but the last that are smaller than the bounded scale, i.e. the next
larger table scale), and symbols ``round(y - means)`` are coded with that entry's integer table
(a Gaussian at the geometric middle of the scales that map to the entry, see ``tables()``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from tcmcodec._compat import drop_keys
from tcmcodec.entropy.coder import SymbolDecoder, SymbolEncoder
from tcmcodec.entropy.tables import CdfTables
from tcmcodec.ops import lower_bound, ste_round, to_symbols

__all__ = ["GaussianConditional", "default_scale_table", "LIKELIHOOD_BOUND"]

LIKELIHOOD_BOUND = 1e-9
"""Floor of every likelihood (CompressAI's ``likelihood_lower_bound``)."""

SCALES_MIN = 0.11
SCALES_MAX = 256.0
SCALES_LEVELS = 64


def default_scale_table() -> Tensor:
    """The TCM/CompressAI scale table: ``exp(linspace(log 0.11, log 256, 64))`` in float32."""
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


def _std_cdf(x: Tensor) -> Tensor:
    """Standard normal CDF as CompressAI computes it: ``0.5 * erfc(-x / sqrt(2))``."""
    return 0.5 * torch.erfc(float(-(2**-0.5)) * x)


def _normal_ppf(q: float) -> float:
    """Standard normal quantile by bisection on ``math.erfc`` (deterministic, no SciPy)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


_TABLE_CACHE: dict[tuple, CdfTables] = {}


def _gaussian_tables(scales: tuple[float, ...], tail_mass: float) -> CdfTables:
    """Integer tables of zero-mean quantized Gaussians, one per scale-table entry (cached).

    Table k covers ``[-c_k, c_k]`` with ``c_k = ceil(scales[k] * -Phi^-1(tail_mass / 2))`` as in
    CompressAI's ``update()`` (the two tails form the escape mass). Its pmf is the Gaussian
    likelihood of each integer, computed in float64 with ``math.erfc``, at the *geometric
    midpoint* of the scales that map to k, ``sqrt(scales[k - 1] * scales[k])``, rather than at
    CompressAI's ``scales[k]`` (the upper end of the bin): this cuts the cost of the 64-level scale
    quantization about 2.5 times (0.23 % -> 0.09 % of the rate on calibrated data). Table 0
    (scales at the floor) and the last table (open-ended bin) use their own entry.
    """
    key = (scales, float(tail_mass))
    tables = _TABLE_CACHE.get(key)
    if tables is None:
        multiplier = -_normal_ppf(tail_mass / 2)
        sqrt2 = math.sqrt(2.0)
        pmfs, offsets, tails = [], [], []
        for k, top in enumerate(scales):
            s = top if k in (0, len(scales) - 1) else math.sqrt(scales[k - 1] * top)
            center = int(math.ceil(top * multiplier))
            v = np.abs(np.arange(-center, center + 1, dtype=np.float64))
            upper = np.array([0.5 * math.erfc(-x / sqrt2) for x in (0.5 - v) / s])
            lower = np.array([0.5 * math.erfc(-x / sqrt2) for x in (-0.5 - v) / s])
            pmfs.append(upper - lower)
            offsets.append(-center)
            tails.append(2.0 * lower[0])
        tables = CdfTables.from_pmfs(pmfs, np.array(offsets, dtype=np.int64), tails)
        _TABLE_CACHE[key] = tables
    return tables


class GaussianConditional(nn.Module):
    """Gaussian conditional layer with CompressAI semantics and a real entropy coder.

    Args:
        scale_table: increasing positive scales of the coding tables; default
            ``exp(linspace(log 0.11, log 256, 64))``.
        scale_bound: smallest scale used by the likelihood and the index rule.
        tail_mass: probability left out of each coding table's range (coded as escapes).
    """

    def __init__(
        self,
        scale_table: Sequence[float] | Tensor | None = None,
        scale_bound: float = SCALES_MIN,
        tail_mass: float = 1e-9,
    ) -> None:
        super().__init__()
        if scale_table is None:
            table = default_scale_table()
        else:
            table = torch.as_tensor(scale_table, dtype=torch.float32).reshape(-1).clone()
        if table.numel() < 1 or bool((table <= 0).any()) or bool((table[1:] <= table[:-1]).any()):
            raise ValueError("scale_table must be a non-empty, strictly increasing positive list")
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound}")
        if not 0 < tail_mass < 0.5:
            raise ValueError(f"tail_mass must be in (0, 0.5), got {tail_mass}")
        self.scale_bound = float(scale_bound)
        self.tail_mass = float(tail_mass)
        self.register_buffer("scale_table", table, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D102
        drop_keys(
            state_dict,
            prefix,
            (
                "_offset",
                "_quantized_cdf",
                "_cdf_length",
                "scale_table",
                "scale_bound",
                "likelihood_lower_bound.bound",
                "lower_bound_scale.bound",
            ),
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def likelihood(self, values: Tensor, scales: Tensor) -> Tensor:
        """Likelihood of residuals ``values`` (``y_hat - means``) under N(0, scales).

        Args:
            values: float tensor of residuals (integers at inference, noisy in training).
            scales: float tensor broadcastable to ``values``; bounded below by ``scale_bound``.

        Returns:
            ``Phi((0.5 - |v|) / s) - Phi((-0.5 - |v|) / s)`` floored at 1e-9, shape of ``values``.
        """
        s = lower_bound(scales, self.scale_bound)
        v = torch.abs(values)
        lik = _std_cdf((0.5 - v) / s) - _std_cdf((-0.5 - v) / s)
        return lower_bound(lik, LIKELIHOOD_BOUND)

    def forward(
        self, y: Tensor, scales: Tensor, means: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Quantizes ``y`` around ``means`` and returns its likelihood.

        Training: the likelihood sees ``y + U(-0.5, 0.5)`` noise and ``y_hat`` is the
        straight-through rounding ``round(y - m) - (y - m).detach() + y``. Eval:
        ``y_hat = round(y - m) + m`` and the likelihood is that of ``y_hat``.

        Args:
            y: (B, C, H, W) latent.
            scales: scales, broadcastable to ``y``.
            means: means, broadcastable to ``y``; zero if None.

        Returns:
            ``(y_hat, likelihoods)``, both of the shape of ``y``.
        """
        m = torch.zeros_like(y) if means is None else means
        r = y - m
        if self.training:
            noisy = r + torch.empty_like(r).uniform_(-0.5, 0.5)
            y_hat = ste_round(r, y)
            return y_hat, self.likelihood(noisy, scales)
        q = torch.round(r)
        return q + m, self.likelihood(q, scales)

    def build_indexes(self, scales: Tensor | np.ndarray) -> np.ndarray:
        """Maps scales to coding-table indexes (CompressAI's rule).

        Float64 scales are compared in float64 (with the float32 table and bound, converted
        exactly); anything else in float32, as CompressAI does.

        Args:
            scales: raw scales, any shape (before the ``scale_bound`` floor).

        Returns:
            int32 numpy array of ``scales``' shape: the number of entries among all but the last
            of ``scale_table`` that are smaller than ``max(scale, scale_bound)``.
        """
        s = torch.as_tensor(scales).detach()
        dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
        s = s.to(device="cpu", dtype=dtype)
        if bool(torch.isnan(s).any()):
            raise ValueError("scales contain NaN")
        s = torch.max(s, torch.tensor([self.scale_bound], dtype=torch.float32).to(dtype))
        table = self.scale_table.detach().to(device="cpu", dtype=torch.float32)[:-1].to(dtype).contiguous()
        return torch.searchsorted(table, s.contiguous(), right=False).to(torch.int32).numpy()

    def tables(self) -> CdfTables:
        """The coding tables, one per scale-table entry (model-independent, cached).

        Table k covers CompressAI's range ``[-ceil(t_k * 6.11), ceil(t_k * 6.11)]`` (``t`` the
        scale table, 6.11 = ``-Phi^-1(tail_mass / 2)``) but its pmf is the quantized Gaussian of
        scale ``sqrt(t_{k-1} t_k)``, the geometric middle of the scales with index k (``t_0`` for
        k = 0, ``t_{K-1}`` for the last), computed in float64: the rate cost of the 64-level
        scale quantization drops from 0.23 % to 0.09 % (calibrated symbols at the reference
        scales) compared with CompressAI's tables at ``t_k``.
        """
        scales = tuple(float(v) for v in self.scale_table.detach().cpu().tolist())
        return _gaussian_tables(scales, self.tail_mass)

    @torch.no_grad()
    def compress(
        self,
        y: Tensor,
        scales: Tensor,
        means: Tensor | None = None,
        encoder: SymbolEncoder | None = None,
        *,
        indexes: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Tensor]:
        """Quantizes ``y`` and (if an encoder is given) entropy-codes the symbols.

        Args:
            y: (B, C, H, W) latent.
            scales: raw scales of ``y``'s shape.
            means: means of ``y``'s shape; zero if None.
            encoder: where to code the symbols; if None only the symbols are computed.
            indexes: ``build_indexes(scales)`` when the caller has it already.

        Returns:
            ``(symbols, y_hat)``: int32 numpy ``round(y - means)`` (B, C, H, W) and
            ``y_hat = symbols + means``, exactly what :meth:`decompress` returns.
        """
        m = torch.zeros_like(y) if means is None else means
        if scales.shape != y.shape or m.shape != y.shape:
            raise ValueError(f"y {tuple(y.shape)}, scales {tuple(scales.shape)} and means "
                             f"{tuple(m.shape)} must have the same shape")
        symbols = to_symbols(y - m)
        if encoder is not None:
            encoder.encode(symbols, self.build_indexes(scales) if indexes is None else indexes, self.tables())
        y_hat = torch.from_numpy(symbols).to(device=m.device, dtype=m.dtype) + m
        return symbols, y_hat

    @torch.no_grad()
    def decompress(
        self,
        decoder: SymbolDecoder,
        scales: Tensor,
        means: Tensor | None = None,
        *,
        indexes: np.ndarray | None = None,
    ) -> Tensor:
        """Decodes symbols coded by :meth:`compress` and returns ``y_hat``.

        Args:
            decoder: the stream to read.
            scales: the raw scales the encoder used, (B, C, H, W).
            means: the means the encoder used (same shape); zero if None.
            indexes: ``build_indexes(scales)`` when the caller has it already.

        Returns:
            ``y_hat = symbols + means``, float tensor of ``scales``' shape on ``means``' device.
        """
        m = torch.zeros_like(scales) if means is None else means
        if m.shape != scales.shape:
            raise ValueError(f"scales {tuple(scales.shape)} and means {tuple(m.shape)} differ")
        symbols = decoder.decode(self.build_indexes(scales) if indexes is None else indexes, self.tables())
        return torch.from_numpy(symbols).to(device=m.device, dtype=m.dtype) + m
