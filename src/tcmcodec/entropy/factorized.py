"""Factorized entropy model for the hyper-latent z (CompressAI 1.2.8 ``EntropyBottleneck``).

Per channel, a monotone cumulative density ``sigmoid(logits(v))`` is learned: ``logits`` is a
chain of 5 tiny dense layers, ``logits = softplus(matrices[i]) @ logits + biases[i]`` and, for the
first 4, ``logits += tanh(factors[i]) * tanh(logits)``. ``quantiles`` (C, 1, 3) are learned
estimates of the tails and the median, trained by :meth:`EntropyBottleneck.aux_loss`.

Parameter names, initialization and numerics follow CompressAI 1.2.8, so official TCM checkpoints
load with ``strict=True`` (CompressAI's coding buffers are dropped on load: tables are rebuilt
from the parameters whenever they change, see :meth:`EntropyBottleneck.tables`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcmcodec._compat import drop_keys
from tcmcodec.entropy.coder import SymbolDecoder, SymbolEncoder
from tcmcodec.entropy.gaussian import LIKELIHOOD_BOUND
from tcmcodec.entropy.tables import MAX_TABLE_LENGTH, CdfTables
from tcmcodec.ops import lower_bound, ste_round, to_symbols

__all__ = ["EntropyBottleneck"]


class EntropyBottleneck(nn.Module):
    """Learned factorized prior with CompressAI 1.2.8 semantics and a real entropy coder.

    Args:
        channels: number of channels C of the coded tensor (one density per channel).
        filters: hidden widths of the per-channel density network.
        init_scale: initial width of the density (and of the quantile estimates).
        tail_mass: probability mass the ``quantiles`` leave out (their aux-loss target); values
            outside the coding range are escaped losslessly.
    """

    def __init__(
        self,
        channels: int,
        filters: Sequence[int] = (3, 3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-9,
    ) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if any(int(f) < 1 for f in filters):
            raise ValueError(f"filters must be positive, got {tuple(filters)}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)

        widths = (1,) + self.filters + (1,)
        scale = self.init_scale ** (1 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = float(np.log(np.expm1(1 / scale / widths[i + 1])))
            matrix = torch.full((self.channels, widths[i + 1], widths[i]), init)
            self.matrices.append(nn.Parameter(matrix))
            bias = torch.empty(self.channels, widths[i + 1], 1)
            nn.init.uniform_(bias, -0.5, 0.5)
            self.biases.append(nn.Parameter(bias))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(self.channels, widths[i + 1], 1)))

        init_q = torch.tensor([-self.init_scale, 0.0, self.init_scale])
        self.quantiles = nn.Parameter(init_q.repeat(self.channels, 1, 1))  # (C, 1, 3)
        target = math.log(2 / self.tail_mass - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]), persistent=False)

        self._tables: CdfTables | None = None
        self._tables_key: Tensor | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D102
        drop_keys(
            state_dict,
            prefix,
            ("_offset", "_quantized_cdf", "_cdf_length", "target", "likelihood_lower_bound.bound"),
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- density -------------------------------------------------------------------------------

    def _logits_cumulative(
        self, inputs: Tensor, stop_gradient: bool, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Logits of the cumulative density at ``inputs`` (C, 1, N) -> (C, 1, N).

        Args:
            inputs: (C, 1, N) points.
            stop_gradient: detach the density parameters.
            dtype: if given, compute with the parameters cast to this dtype on ``inputs``' device.
        """
        logits = inputs
        for i in range(len(self.filters) + 1):
            matrix, bias = self.matrices[i], self.biases[i]
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            if dtype is not None:
                matrix, bias = matrix.to(inputs.device, dtype), bias.to(inputs.device, dtype)
            logits = torch.matmul(F.softplus(matrix), logits)
            logits = logits + bias
            if i < len(self.filters):
                factor = self.factors[i]
                if stop_gradient:
                    factor = factor.detach()
                if dtype is not None:
                    factor = factor.to(inputs.device, dtype)
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def _likelihood(
        self, inputs: Tensor, stop_gradient: bool = False, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Unfloored likelihood of the unit bin around ``inputs`` (C, 1, N), with its logits.

        Uses CompressAI 1.2.8's sign trick, ``|sigmoid(s * upper) - sigmoid(s * lower)|`` with
        ``s = -sign(lower + upper)``, which keeps precision in both tails. ``stop_gradient`` and
        ``dtype`` are passed to :meth:`_logits_cumulative`.
        """
        lower = self._logits_cumulative(inputs - 0.5, stop_gradient, dtype)
        upper = self._logits_cumulative(inputs + 0.5, stop_gradient, dtype)
        sign = -torch.sign(lower + upper).detach()
        likelihood = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return likelihood, lower, upper

    def medians(self) -> Tensor:
        """Per-channel medians, ``quantiles[:, 0, 1]``, shape (C,)."""
        return self.quantiles[:, 0, 1]

    def aux_loss(self) -> Tensor:
        """``sum |logits(quantiles) - target|``: trains ``quantiles`` only (density detached)."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def likelihood(self, values: Tensor) -> Tensor:
        """Likelihood of ``values`` (B, C, ...) under the per-channel density, floored at 1e-9.

        Args:
            values: float tensor whose dim 1 has C channels (the bins are ``[v - 0.5, v + 0.5]``).

        Returns:
            Likelihoods of ``values``' shape.
        """
        if values.dim() < 2 or values.shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}, ...), got {tuple(values.shape)}")
        perm = [1, 0] + list(range(2, values.dim()))
        x = values.permute(*perm).contiguous()  # (C, B, ...)
        shape = x.shape
        lik, _, _ = self._likelihood(x.reshape(self.channels, 1, -1))  # (C, 1, N)
        lik = lower_bound(lik, LIKELIHOOD_BOUND)
        return lik.reshape(shape).permute(*perm).contiguous()

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Quantizes ``z`` around the medians and returns its likelihood.

        Training: the likelihood sees ``z + U(-0.5, 0.5)`` noise and ``z_hat`` is the
        straight-through rounding ``round(z - m) - (z - m).detach() + z``. Eval:
        ``z_hat = round(z - m) + m`` and the likelihood is that of ``z_hat``.

        Args:
            z: (B, C, H, W) (or (B, C, ...)) hyper-latent.

        Returns:
            ``(z_hat, likelihoods)``, both of ``z``'s shape.
        """
        if z.dim() < 2 or z.shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}, ...), got {tuple(z.shape)}")
        m = self.medians().detach().reshape(1, -1, *([1] * (z.dim() - 2)))  # (1, C, 1, 1)
        r = z - m
        if self.training:
            noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            z_hat = ste_round(r, z)
            return z_hat, self.likelihood(noisy)
        z_hat = torch.round(r) + m
        return z_hat, self.likelihood(z_hat)

    # --- coding tables ---------------------------------------------------------------------------

    def _fingerprint(self) -> Tensor:
        """All parameter values, flattened (float64, CPU): the cache key of the tables."""
        flat = [p.detach().reshape(-1).to("cpu", torch.float64) for p in self.parameters()]
        return torch.cat(flat)

    @torch.no_grad()
    def tables(self) -> CdfTables:
        """Coding tables, one per channel, built as CompressAI's ``update()`` does.

        Channel c covers symbols ``-ceil(m - q0) .. ceil(q2 - m)`` (``m`` the median, ``q0``/``q2``
        the tail quantiles, each side clamped to ``[0, MAX_TABLE_LENGTH // 2 - 1]``), with pmf =
        the density's likelihood at ``m + symbol`` and tail mass = the density beyond the range.

        The tables are cached and rebuilt automatically whenever any parameter value changed
        (the cache key is the parameters' values, so in-place updates, ``load_state_dict`` or
        ``.data`` replacement can never leave stale tables).

        Returns:
            The table set (C tables; table c codes channel c).
        """
        key = self._fingerprint()
        if self._tables is not None and self._tables_key is not None:
            if torch.equal(key, self._tables_key):
                return self._tables
        # Always float64 on the CPU, whatever the module's device: an encoder on a GPU and a
        # decoder on a CPU must build the same integer tables.
        q = self.quantiles.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(key).all()):
            raise ValueError("cannot build coding tables: non-finite entropy-bottleneck parameters")
        medians = q[:, 0, 1]
        limit = MAX_TABLE_LENGTH // 2 - 1
        minima = torch.ceil(medians - q[:, 0, 0]).clamp(0, limit).to(torch.int64)  # (C,)
        maxima = torch.ceil(q[:, 0, 2] - medians).clamp(0, limit).to(torch.int64)  # (C,)
        lengths = minima + maxima + 1  # (C,)
        pmf_start = medians - minima.to(torch.float64)  # (C,)
        samples = torch.arange(int(lengths.max()), dtype=torch.float64)
        samples = samples[None, None, :] + pmf_start[:, None, None]  # (C, 1, L)
        pmf, lower, upper = self._likelihood(samples, stop_gradient=True, dtype=torch.float64)
        last = (lengths - 1)[:, None]  # (C, 1)
        tails = torch.sigmoid(lower[:, 0, 0]) + torch.sigmoid(-upper[:, 0].gather(1, last)[:, 0])
        pmf = pmf[:, 0, :].numpy()  # (C, L)
        pmfs = [pmf[c, :n] for c, n in enumerate(lengths.tolist())]
        tables = CdfTables.from_pmfs(pmfs, (-minima).numpy(), tails.numpy())
        self._tables, self._tables_key = tables, key
        return tables

    # --- coding helpers --------------------------------------------------------------------------

    def _check_input(self, z: Tensor) -> None:
        if z.dim() != 4 or z.shape[1] != self.channels:
            raise ValueError(f"expected z (B, {self.channels}, h, w), got {tuple(z.shape)}")

    def _indexes(self, shape: tuple[int, int, int, int]) -> np.ndarray:
        """Table index (= channel) of every position of a (B, C, h, w) tensor, int32."""
        channel = np.arange(self.channels, dtype=np.int32).reshape(1, -1, 1, 1)
        return np.broadcast_to(channel, shape)

    @torch.no_grad()
    def compress(
        self, z: Tensor, encoder: SymbolEncoder | None = None
    ) -> tuple[np.ndarray, Tensor]:
        """Quantizes ``z`` and (if an encoder is given) entropy-codes the symbols.

        Args:
            z: (B, C, h, w) hyper-latent.
            encoder: where to code the symbols (channel c with table c); if None only the
                symbols are computed.

        Returns:
            ``(symbols, z_hat)``: int32 numpy ``round(z - medians)`` (B, C, h, w) and
            ``z_hat = symbols + medians``, exactly what :meth:`decompress` returns.
        """
        self._check_input(z)
        m = self.medians().detach().reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        symbols = to_symbols(z - m)
        if encoder is not None:
            encoder.encode(symbols, self._indexes(symbols.shape), self.tables())
        z_hat = torch.from_numpy(symbols).to(device=m.device, dtype=m.dtype) + m
        return symbols, z_hat

    @torch.no_grad()
    def decompress(self, decoder: SymbolDecoder, size: Sequence[int], batch: int = 1) -> Tensor:
        """Decodes symbols coded by :meth:`compress` and returns ``z_hat``.

        Args:
            decoder: the stream to read.
            size: spatial size ``(h, w)`` of z.
            batch: batch size B the encoder used.

        Returns:
            ``z_hat`` (B, C, h, w), float on the parameters' device.
        """
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1 or int(batch) < 1:
            raise ValueError(f"size must be (h, w) and batch >= 1, got {size}, batch {batch}")
        shape = (int(batch), self.channels, *size)
        symbols = decoder.decode(self._indexes(shape), self.tables())
        m = self.medians().detach().reshape(1, -1, 1, 1)
        return torch.from_numpy(symbols).to(device=m.device, dtype=m.dtype) + m
