"""The TCM model family (Liu, Sun & Katto, CVPR 2023), compatible with the official checkpoints."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..entropy import EntropyBottleneck, GaussianConditional, SymbolDecoder, SymbolEncoder
from ..errors import FormatError
from ..ops import cat_as
from ..layers import (
    ResidualBlockUpsample, ResidualBlockWithStride, SWAtten, WithShortcuts, conv3x3, subpel_conv3x3, tcm_stage,
)
from .gain import GainUnit
from .config import TCMConfig
from .bands import Band, HyperRows, banded, hyper_in_bands, row_bands
from .streams import ModelStreams
from .params import CHECK_BYTES, deterministic, param_net, slice_check, verify_check
from .tiling import Tiling, analyze, synthesize
from .transforms import analysis, shortcut_links, shortcut_taps, synthesis

__all__ = ["TCMConfig", "TCM", "ModelStreams"]


def _cc_transform(in_ch: int, hidden: tuple[int, int], out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(in_ch, hidden[0]), nn.GELU(), conv3x3(hidden[0], hidden[1]), nn.GELU(), conv3x3(hidden[1], out_ch)
    )


class TCM(nn.Module):
    """Learned image codec with mixed Transformer-CNN transforms and a channel-wise Swin entropy model.

    Module names equal the official checkpoint's, so ``model.load_state_dict(official)`` works.
    Images go in as (B, 3, H, W) floats in [0, 1] with H and W multiples of ``pad_multiple`` (64);
    ``tcmcodec.codec`` pads arbitrary images.

    Args:
        config: the hyper-parameters (``TCMConfig``).
    """

    pad_multiple = 64

    def __init__(self, config: TCMConfig | None = None):
        super().__init__()
        self.config = c = config or TCMConfig()
        C = 2 * c.N
        self.g_a, self.g_s = analysis(c), synthesis(c)
        if c.haar_shortcuts:
            self.g_a_links, self.g_s_links = shortcut_links(c)
        hyper = (c.hyper_depth, c.hyper_head_dim, c.hyper_window)
        self.h_a = nn.Sequential(
            ResidualBlockWithStride(c.M, C, 2), *tcm_stage(C, *hyper), conv3x3(C, c.z_channels, stride=2)
        )
        self.h_mean_s = nn.Sequential(
            ResidualBlockUpsample(c.z_channels, C, 2), *tcm_stage(C, *hyper), subpel_conv3x3(C, c.M, 2)
        )
        self.h_scale_s = nn.Sequential(
            ResidualBlockUpsample(c.z_channels, C, 2), *tcm_stage(C, *hyper), subpel_conv3x3(C, c.M, 2)
        )
        sd = self.slice_dim
        support = [c.M + sd * min(i, c.max_support_slices) for i in range(c.num_slices)]
        atten = dict(inter_dim=c.atten_inter_dim, head_dim=c.atten_head_dim, window=c.atten_window)
        self.atten_mean = nn.ModuleList(nn.Sequential(SWAtten(ch, **atten)) for ch in support)
        self.atten_scale = nn.ModuleList(nn.Sequential(SWAtten(ch, **atten)) for ch in support)
        self.cc_mean_transforms = nn.ModuleList(_cc_transform(ch, c.cc_hidden, sd) for ch in support)
        self.cc_scale_transforms = nn.ModuleList(_cc_transform(ch, c.cc_hidden, sd) for ch in support)
        self.lrp_transforms = nn.ModuleList(_cc_transform(ch + sd, c.cc_hidden, sd) for ch in support)
        self.entropy_bottleneck = EntropyBottleneck(c.z_channels)
        self.gaussian_conditional = GaussianConditional()
        if c.num_gains:
            # Higher quality: larger gain before quantization (finer steps), undone before g_s.
            self.gain = GainUnit(c.num_gains, c.M, init=(0.5, 2.5))
            self.inv_gain = GainUnit(c.num_gains, c.M, init=(2.0, 0.4))
            self.hyper_gain = GainUnit(c.num_gains, c.z_channels)
            self.inv_hyper_gain = GainUnit(c.num_gains, c.z_channels)

    # ------------------------------------------------------------------ helpers
    @property
    def slice_dim(self) -> int:
        return self.config.M // self.config.num_slices

    @property
    def analysis(self) -> nn.Module:
        """g_a, with its Haar shortcuts when the config has them."""
        if not self.config.haar_shortcuts:
            return self.g_a
        return WithShortcuts(self.g_a, self.g_a_links, shortcut_taps(self.config, synthesis_side=False))

    @property
    def synthesis(self) -> nn.Module:
        """g_s, with its Haar shortcuts when the config has them."""
        if not self.config.haar_shortcuts:
            return self.g_s
        return WithShortcuts(self.g_s, self.g_s_links, shortcut_taps(self.config, synthesis_side=True))

    @property
    def continuous_rate(self) -> bool:
        """Whether the model takes a real-valued quality (gain units)."""
        return self.config.num_gains > 0

    def _quality(self, quality: float | Tensor | None, batch: int, device) -> Tensor | None:
        """Validated quality as a (B,) tensor, or None for fixed-rate models."""
        if not self.continuous_rate:
            if quality is not None:
                raise ValueError("this model has a fixed rate: quality must be None")
            return None
        if quality is None:
            raise ValueError(f"this model is continuous-rate: pass a quality in [1, {self.config.num_gains}]")
        q = torch.as_tensor(quality, dtype=torch.float32, device=device).reshape(-1)
        if q.numel() == 1:
            q = q.expand(batch)
        if q.numel() != batch or not bool(((q >= 1) & (q <= self.config.num_gains)).all()):
            raise ValueError(f"quality must be in [1, {self.config.num_gains}] (one value or one per image)")
        return q

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[2] % self.pad_multiple or x.shape[3] % self.pad_multiple:
            raise ValueError(f"height and width must be multiples of {self.pad_multiple}, got {tuple(x.shape[2:])}")

    def _analysis(self, x: Tensor, q: Tensor | None, tiling: Tiling = Tiling()) -> tuple[Tensor, Tensor]:
        y = analyze(self.analysis, x, tiling)  # (B, M, H/16, W/16)
        if q is not None:
            y = self.gain(y, q)
        z = self.h_a(y)  # (B, Z, H/64, W/64)
        if q is not None:
            z = self.hyper_gain(z, q)
        return y, z

    # The entropy-parameter path takes ``net``: the model itself, or its float64 copy for coding
    # (``params.param_net``), so that every machine computes the same table indexes.
    def _hyper_synthesis(
        self, z_hat: Tensor, q: Tensor | None, size: tuple[int, int], net: nn.Module | None = None,
        bands: list[Band] | None = None,
    ) -> tuple[Tensor | HyperRows, Tensor | HyperRows]:
        """Latent means and scales (B, M, h, w); with ``bands`` and above ``bands.HYPER_BUDGET``, as
        :class:`~.bands.HyperRows` that compute each band's rows when it reads them (no whole-latent
        float64 means and scales)."""
        net = self if net is None else net
        if q is not None:
            z_hat = net.inv_hyper_gain(z_hat, q)
        h, w = size
        # Band by band only in the float64 copy (params.SliceHeads) and for large outputs (bands.HYPER_BUDGET).
        if bands is not None and getattr(net, "heads", None) is not None and hyper_in_bands(h, w, self.config):
            return HyperRows(net.h_mean_s, z_hat, size, self.config), HyperRows(net.h_scale_s, z_hat, size, self.config)
        return net.h_mean_s(z_hat)[:, :, :h, :w], net.h_scale_s(z_hat)[:, :, :h, :w]

    def _synthesis(self, y_hat: Tensor, q: Tensor | None) -> Tensor:
        if q is not None:
            y_hat = self.inv_gain(y_hat, q)
        return self.synthesis(y_hat)

    def _reconstruct(self, y_hat: Tensor, q: Tensor | None, tiling: Tiling, dtype: torch.dtype) -> Tensor:
        """The coded reconstruction: clamped to [0, 1], in ``dtype`` (uint8: rounded), tiled by ``tiling``.
        ``y_hat`` is the caller's own fresh tensor: the inverse gain scales it in place (same values as
        ``inv_gain``; no second whole latent, 83 MB for ``tcm-xs`` at 7680x4320, while g_s runs)."""
        if q is not None:
            y_hat = y_hat.mul_(self.inv_gain.vector(q))
        return synthesize(self.synthesis, y_hat, tiling, dtype)

    def _bands(self, h: int, w: int, dtype: torch.dtype) -> list[Band] | None:
        """The row bands of the entropy-parameter path for a latent of h x w, the same for encoder and
        decoder; only the float64 path runs in bands (``models.bands``)."""
        return row_bands(h, w, self.config) if dtype == torch.float64 else None

    def _slice_params(
        self, i: int, latent_means: Tensor, latent_scales: Tensor, done: list[Tensor], net: nn.Module | None = None,
        bands: list[Band] | None = None,
    ):
        """Mean, raw scale and LRP input of slice i given the decoded earlier slices. The LRP input is the
        mean support; for the float64 copy (``params.SliceHeads``, with or without ``bands``) it is the
        mean support's part of LRP's first convolution instead."""
        net = self if net is None else net
        support = done[: self.config.max_support_slices]
        heads = getattr(net, "heads", None)
        if heads is None:  # the model's own layers (training, format version 1)
            ms = net.atten_mean[i](torch.cat([latent_means, *support], dim=1))
            scale = net.cc_scale_transforms[i](net.atten_scale[i](torch.cat([latent_scales, *support], dim=1)))
            return net.cc_mean_transforms[i](ms), scale, ms

        def mean_and_lrp_part(*t: Tensor) -> Tensor:  # cc_mean_transforms[i] starts at its first GELU here
            first = heads[i].mean(net.atten_mean[i](t))  # (B, 2 * hidden, rows, W); SWAtten reads the parts
            hidden = first.shape[1] // 2
            return torch.cat([net.cc_mean_transforms[i](first[:, :hidden]), first[:, hidden:]], dim=1)

        def scale(*t: Tensor) -> Tensor:
            return net.cc_scale_transforms[i](heads[i].scale(net.atten_scale[i](t)))

        both = banded(mean_and_lrp_part, [latent_means, *support], bands)
        sd = self.slice_dim
        return both[:, :sd], banded(scale, [latent_scales, *support], bands), both[:, sd:]

    def _code_slice(
        self, i: int, latent_means: Tensor, latent_scales: Tensor, done: list[Tensor], net: nn.Module,
        bands: list[Band] | None, code: Callable[[Tensor, Tensor, np.ndarray], Tensor],
    ) -> Tensor:
        """Slice i, encoder or decoder alike: its parameters, ``code(mu, scale, indexes)`` (quantize and
        encode, or decode: the slice's y_hat), then LRP. Returns the slice's y_hat after LRP; the
        whole-latent means, scales, indexes and LRP input are freed here, each as soon as it is read
        for the last time (~210 MB for ``tcm-xs`` at 7680x4320 that the next slice's parameters no
        longer share memory with)."""
        mu, scale, lrp_input = self._slice_params(i, latent_means, latent_scales, done, net, bands)
        indexes = self.gaussian_conditional.build_indexes(scale)
        y_hat_slice = code(mu, scale, indexes)
        del mu, scale, indexes  # LRP reads its input and the slice only
        return self._lrp(i, lrp_input, y_hat_slice, net, bands)

    def _lrp(
        self, i: int, lrp_input: Tensor, y_hat_slice: Tensor, net: nn.Module | None = None,
        bands: list[Band] | None = None,
    ) -> Tensor:
        """Latent residual prediction: add ``0.5 * tanh(lrp(mean_support, y_hat_i))``; ``lrp_input`` and
        ``bands`` as from ``_slice_params``."""
        net = self if net is None else net
        heads = getattr(net, "heads", None)
        if heads is None:
            return y_hat_slice + 0.5 * torch.tanh(net.lrp_transforms[i](torch.cat([lrp_input, y_hat_slice], dim=1)))

        def add_lrp(head: Tensor, y_hat: Tensor) -> Tensor:  # lrp_transforms[i] starts at its first GELU here
            h = head + heads[i].lrp_y(y_hat)
            return y_hat + 0.5 * torch.tanh(net.lrp_transforms[i](h))

        return banded(add_lrp, [lrp_input, y_hat_slice], bands)

    # ------------------------------------------------------------------ training / estimation
    def forward(self, x: Tensor, quality: float | Tensor | None = None) -> dict[str, Any]:
        """Run the model with noise (training) or rounding (eval) in place of coding.

        Args:
            x: images (B, 3, H, W) in [0, 1], H and W multiples of 64.
            quality: for continuous-rate models, one quality in [1, L] or one per image (B,).

        Returns:
            ``{"x_hat": (B, 3, H, W) unclamped, "likelihoods": {"y": (B, M, H/16, W/16), "z": (B, Z, H/64, W/64)}}``.
        """
        self._check_input(x)
        q = self._quality(quality, x.shape[0], x.device)
        y, z = self._analysis(x, q)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        latent_means, latent_scales = self._hyper_synthesis(z_hat, q, y.shape[2:])
        y_hat_slices: list[Tensor] = []
        likelihoods = []
        for i, y_slice in enumerate(y.chunk(self.config.num_slices, 1)):
            mu, scale, lrp_input = self._slice_params(i, latent_means, latent_scales, y_hat_slices)
            y_hat_slice, lik = self.gaussian_conditional(y_slice, scale, mu)
            likelihoods.append(lik)
            y_hat_slices.append(self._lrp(i, lrp_input, y_hat_slice))
        x_hat = self._synthesis(torch.cat(y_hat_slices, dim=1), q)
        return {"x_hat": x_hat, "likelihoods": {"y": torch.cat(likelihoods, dim=1), "z": z_likelihoods}}

    def aux_loss(self) -> Tensor:
        """Auxiliary loss that fits the factorized prior's quantiles (its own optimizer)."""
        return self.entropy_bottleneck.aux_loss()

    # ------------------------------------------------------------------ real coding
    def compress(
        self,
        x: Tensor,
        quality: float | None = None,
        return_x_hat: bool = False,
        *,
        param_dtype: torch.dtype = torch.float64,
        tiling: Tiling = Tiling(),
    ) -> ModelStreams:
        """Entropy-code one image.

        Args:
            x: image (1, 3, H, W), float in [0, 1] or uint8 (converted tile by tile), H and W
                multiples of 64.
            quality: for continuous-rate models, the quality in [1, L].
            return_x_hat: also run the synthesis and return the reconstruction the decoder will
                produce (bit-exact on the same machine).
            param_dtype: dtype of the entropy-parameter path (hyper-synthesis, SWAtten, cc
                transforms, LRP). ``torch.float64`` (default) makes the coding-table indexes the same
                on every machine (format version 2); ``torch.float32`` is format version 1.
            tiling: tiles of the analysis and of the reconstruction (:mod:`tcmcodec.models.tiling`);
                the decoder must use the same one. Default: untiled.

        Returns:
            ``ModelStreams`` with the coded z and y, the per-slice check values and, when asked for,
            ``x_hat`` clamped to [0, 1] in x's dtype (uint8: rounded, as the decoder's ``uint8`` output).
            When the caller holds no other reference to ``x``, it is freed after the analysis, before
            the entropy coding (``tcmcodec.codec`` passes its image so; no decorator holds it either).
        """
        self._check_input(x)
        if x.shape[0] != 1:
            raise ValueError("compress codes one image at a time (batch size 1)")
        net = param_net(self, param_dtype)
        q = self._quality(quality, 1, x.device)
        out_dtype = torch.uint8 if x.dtype == torch.uint8 else x.dtype
        with torch.no_grad(), deterministic(x.device):
            # [y, z] in a list that _compress empties: no frame keeps the whole y while the slices are coded.
            latents = list(self._analysis(x, q, tiling))
            del x  # our last reference to the image
            return self._compress(latents, q, return_x_hat, net, param_dtype, tiling, out_dtype)

    def _compress(
        self, latents: list[Tensor], q: Tensor | None, return_x_hat: bool, net: nn.Module, dtype, tiling: Tiling,
        out_dtype: torch.dtype,
    ) -> ModelStreams:
        y, z = latents  # (1, M, h, w), (1, Z, h / 4, w / 4)
        latents.clear()
        z_coder = SymbolEncoder()
        _, z_hat = self.entropy_bottleneck.compress(z, z_coder)
        bands = self._bands(*y.shape[2:], dtype)
        latent_means, latent_scales = self._hyper_synthesis(z_hat.to(dtype), q, y.shape[2:], net, bands)
        y_coder = SymbolEncoder()
        y_hat_slices: list[Tensor] = []
        checks = bytearray()
        y_dtype, z_shape = y.dtype, tuple(z.shape[2:])
        y_slices = [t.clone() for t in y.chunk(self.config.num_slices, 1)]  # each freed once coded
        del y, z
        for i in range(self.config.num_slices):
            def code(mu: Tensor, scale: Tensor, indexes: np.ndarray, i: int = i) -> Tensor:
                checks.extend(slice_check(indexes))
                y_slice, y_slices[i] = y_slices[i].to(dtype), None  # (B, M / slices, h, w)
                return self.gaussian_conditional.compress(y_slice, scale, mu, y_coder, indexes=indexes)[1]

            y_hat_slices.append(self._code_slice(i, latent_means, latent_scales, y_hat_slices, net, bands, code))
        x_hat = None
        if return_x_hat:
            del latent_means, latent_scales  # whole-latent tensors
            y_hat = cat_as(y_hat_slices, y_dtype)  # (empties the list of float64 slices)
            x_hat = self._reconstruct(y_hat, q, tiling, out_dtype)
        return ModelStreams(z=z_coder.finish(), y=y_coder.finish(), z_shape=z_shape, checks=bytes(checks), x_hat=x_hat)

    @torch.no_grad()
    def decompress(
        self,
        streams: ModelStreams,
        quality: float | None = None,
        *,
        param_dtype: torch.dtype = torch.float64,
        tiling: Tiling = Tiling(),
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Decode one image coded by ``compress``.

        Args:
            streams: the coded streams, z's shape and (unless None) the per-slice check values.
            quality: the quality it was coded with (continuous-rate models).
            param_dtype: the ``param_dtype`` it was coded with.
            tiling: the ``tiling`` it was coded with.
            dtype: of the reconstruction: the model's float dtype (default), or ``torch.uint8``
                (rounded tile by tile: no full-size float image).

        Returns:
            The reconstruction (1, 3, 64 h, 64 w) clamped to [0, 1] (uint8: 0..255).

        Raises:
            FormatError: the streams are corrupt or do not fit ``z_shape``, or a slice's table
                indexes differ from the encoder's (its check value does not match).
        """
        h, w = streams.z_shape
        first = next(self.parameters())
        q = self._quality(quality, 1, first.device)
        z_coder, y_coder = SymbolDecoder(streams.z), SymbolDecoder(streams.y)
        # Cheap consistency checks before any network runs: each stream holds exactly its symbols.
        for name, coder, expected in (("z", z_coder, self.config.z_channels * h * w),
                                      ("y", y_coder, self.config.M * 16 * h * w)):
            if coder.remaining != expected:
                raise FormatError(f"{name} stream holds {coder.remaining} symbols, expected {expected}")
        checks = streams.checks
        if checks is not None and len(checks) != CHECK_BYTES * self.config.num_slices:
            raise FormatError(f"check stream has {len(checks)} bytes, expected {CHECK_BYTES * self.config.num_slices}")
        net = param_net(self, param_dtype)
        with deterministic(first.device):
            z_hat = self.entropy_bottleneck.decompress(z_coder, (h, w)).to(param_dtype)
            bands = self._bands(4 * h, 4 * w, param_dtype)
            latent_means, latent_scales = self._hyper_synthesis(z_hat, q, (4 * h, 4 * w), net, bands)
            y_hat_slices: list[Tensor] = []
            for i in range(self.config.num_slices):
                def code(mu: Tensor, scale: Tensor, indexes: np.ndarray, i: int = i) -> Tensor:
                    if checks is not None:
                        verify_check(i, indexes, checks[CHECK_BYTES * i : CHECK_BYTES * (i + 1)])
                    return self.gaussian_conditional.decompress(y_coder, scale, mu, indexes=indexes)

                y_hat_slices.append(self._code_slice(i, latent_means, latent_scales, y_hat_slices, net, bands, code))
            z_coder.finish()
            y_coder.finish()
            del latent_means, latent_scales  # whole-latent tensors, before g_s
            y_hat = cat_as(y_hat_slices, first.dtype)
            return self._reconstruct(y_hat, q, tiling, first.dtype if dtype is None else dtype)

    # ------------------------------------------------------------------ checkpoints
    @staticmethod
    def infer_config(state_dict: Mapping[str, Tensor]) -> TCMConfig:
        """Infer N, M, z channels, slices and gain levels from an (official or our) state dict."""
        try:
            N = state_dict["g_a.0.conv1.weight"].shape[0] // 2
            z_channels = state_dict["entropy_bottleneck.quantiles"].shape[0]
        except KeyError as e:
            raise ValueError(f"not a TCM state dict: missing {e.args[0]!r}") from None
        last_ga = max(int(k.split(".")[1]) for k in state_dict if k.startswith("g_a."))
        M = state_dict[f"g_a.{last_ga}.weight"].shape[0]
        num_slices = len({k.split(".")[1] for k in state_dict if k.startswith("cc_mean_transforms.")})
        num_gains = state_dict["gain.gain"].shape[0] if "gain.gain" in state_dict else 0
        return TCMConfig(N=N, M=M, z_channels=z_channels, num_slices=num_slices, max_support_slices=num_slices,
                         num_gains=num_gains)

    @classmethod
    def from_state_dict(cls, obj: str | os.PathLike | Mapping[str, Any], config: TCMConfig | None = None) -> "TCM":
        """Build a model from an official checkpoint or a state dict.

        Args:
            obj: a path to a ``.pth.tar`` / ``.pth`` (``torch.save`` of a dict with ``"state_dict"`` or of a
                bare state dict), a dict with ``"state_dict"``, or a bare state dict (tensors or numpy arrays).
                A ``module.`` prefix (DataParallel) is stripped; CompressAI's coding buffers are ignored.
            config: the hyper-parameters; inferred from the tensors' shapes when omitted (N, M, slices).

        Returns:
            The model in eval mode.
        """
        if isinstance(obj, (str, os.PathLike)):
            obj = torch.load(os.fspath(obj), map_location="cpu", weights_only=True)
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected a state dict or checkpoint, got {type(obj).__name__}")
        sd = obj.get("state_dict", obj)
        sd = {(k[len("module."):] if k.startswith("module.") else k): torch.as_tensor(v) for k, v in sd.items()}
        model = cls(config or cls.infer_config(sd))
        model.load_state_dict(sd)
        return model.eval()
