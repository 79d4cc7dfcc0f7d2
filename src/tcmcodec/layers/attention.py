"""Swin window attention (the reference's ``WMSA``/``Block``) on top of ``scaled_dot_product_attention``.

Unlike the reference, any feature-map size works: the map is zero-padded on the bottom/right to a
multiple of the window inside the layer, padded keys are masked out for real queries, and the
output is cropped back. On maps whose sides are window multiples the result is the reference's.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["WindowAttention", "SwinBlock", "to_windows", "from_windows"]


@functools.lru_cache(maxsize=16)
def _relative_index(window: int) -> Tensor:
    """(N, N) flat index into a (2p-1)*(2p-1) table for token pairs of a p x p window, N = p*p.

    Cached, so it is built outside inference mode: an inference tensor could not be used later by
    autograd (training after coding in the same process).
    """
    with torch.inference_mode(False):
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"), -1)
        coords = coords.reshape(-1, 2)
        rel = coords[:, None, :] - coords[None, :, :] + window - 1  # (N, N, 2)
        return rel[..., 0] * (2 * window - 1) + rel[..., 1]


@functools.lru_cache(maxsize=64)
def _window_masks(hp: int, wp: int, h: int, w: int, window: int, shifted: bool, device) -> tuple[Tensor, Tensor] | None:
    with torch.inference_mode(False):  # cached: ordinary tensors (see _relative_index)
        return _build_window_masks(hp, wp, h, w, window, shifted, device)


def _build_window_masks(
    hp: int, wp: int, h: int, w: int, window: int, shifted: bool, device
) -> tuple[Tensor, Tensor] | None:
    """Masks of the windows that need one, or ``None`` when no window does.

    The map is (hp, wp) after padding; (h, w) is the real size. For shifted windows the map has
    already been rolled by (-p/2, -p/2). Returns ``(window_ids, mask)`` with mask (nWm, N, N) bool,
    True where a query may NOT attend to a key.
    """
    padded = hp != h or wp != w
    if not shifted and not padded:
        return None
    s = window - window // 2
    rows = torch.arange(hp, device=device)
    cols = torch.arange(wp, device=device)
    # Token attributes on the (possibly rolled) map.
    if shifted:
        rows_src = (rows + window // 2) % hp  # original row of the token now at `rows`
        cols_src = (cols + window // 2) % wp
    else:
        rows_src, cols_src = rows, cols
    is_pad = (rows_src[:, None] >= h) | (cols_src[None, :] >= w)  # (hp, wp)
    nh, nw = hp // window, wp // window
    # Reference shift mask: in the last window row (column), tokens with in-window row (col) < s
    # and >= s must not see each other.
    region_r = torch.zeros(hp, dtype=torch.long, device=device)
    region_c = torch.zeros(wp, dtype=torch.long, device=device)
    if shifted:
        r_in = rows % window
        c_in = cols % window
        region_r = torch.where((rows // window == nh - 1) & (r_in >= s), 1, 0)
        region_c = torch.where((cols // window == nw - 1) & (c_in >= s), 1, 0)
    region = region_r[:, None] * 2 + region_c[None, :]  # (hp, wp)

    def windows(t: Tensor) -> Tensor:  # (hp, wp) -> (nW, N)
        return t.reshape(nh, window, nw, window).transpose(1, 2).reshape(nh * nw, window * window)

    region_w, pad_w = windows(region), windows(is_pad)
    mask = region_w[:, :, None] != region_w[:, None, :]  # (nW, N, N)
    mask |= pad_w[:, None, :] & ~pad_w[:, :, None]  # real queries ignore padded keys
    needs = mask.flatten(1).any(1)
    ids = needs.nonzero().flatten()
    return ids, mask[ids]


def _attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for (B, nW, h, N, d) windows, ``bias`` (h, N, N) or (nW, h, N, N).

    The windows are flattened into the batch: on 4-D inputs ``scaled_dot_product_attention`` runs a
    fused (flash) kernel on CPU as on CUDA, which never builds the (N, N) score matrices of all windows
    (measured 5x faster than the written-out softmax for the first stage of ``tcm-s``, which spends
    most of its time moving those matrices through memory; on 5-D inputs it falls back to that
    written-out math). Every query keeps at least one key (itself), so no row is all ``-inf``.
    Returns (B, nW, h, N, d), a view whose memory is (B, nW, N, h, d): heads already concatenated.
    """
    b, nw, h, n, d = q.shape
    if bias.dim() == 4:  # one bias per window: repeat it over the batch
        bias = bias.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(b * nw, h, n, n)
    else:  # the fused kernel takes 4-D masks only (a 3-D one sends it to the written-out math)
        bias = bias.unsqueeze(0)
    out = F.scaled_dot_product_attention(q.reshape(b * nw, h, n, d), k.reshape(b * nw, h, n, d),
                                         v.reshape(b * nw, h, n, d), attn_mask=bias)
    return out.reshape(b, nw, h, n, d)


def _padded(n: int, p: int) -> int:
    return -(-n // p) * p


def _pad(x: Tensor, hp: int, wp: int) -> Tensor:  # (B, H, W, C) -> (B, hp, wp, C), zeros bottom/right
    h, w = x.shape[1:3]
    return x if (h, w) == (hp, wp) else F.pad(x, (0, 0, 0, wp - w, 0, hp - h))


def _crop(x: Tensor, h: int, w: int) -> Tensor:
    return x if x.shape[1:3] == (h, w) else x[:, :h, :w]


@functools.lru_cache(maxsize=64)
def _shift_order(h: int, w: int, p: int, shift: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For an h x w map (multiples of p) rolled by (-shift, -shift) and cut into p x p windows: ``order``
    (h * w,), the flat position in the map of each token in window order, and ``inverse``, its
    inverse permutation. Built outside inference mode (see :func:`_relative_index`)."""
    with torch.inference_mode(False):
        rows = ((torch.arange(h, device=device) + shift) % h).view(h // p, p)  # (window row, row in window)
        cols = ((torch.arange(w, device=device) + shift) % w).view(w // p, p)
        order = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(-1)  # (nh, nw, p, p) flattened
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=device)
        return order, inverse


def to_windows(x: Tensor, p: int, shift: int = 0) -> Tensor:
    """The tokens of ``x`` (B, H, W, C), H and W multiples of p, rolled by (-shift, -shift) and cut into
    p x p windows: (B, nW, p * p, C), windows in row-major order. One copy (the reference rolls, then
    partitions); a shifted one is a gather of whole tokens (``index_select``, 4x faster than an
    element-wise advanced index)."""
    b, h, w, c = x.shape
    if not shift:
        return x.reshape(b, h // p, p, w // p, p, c).transpose(2, 3).reshape(b, -1, p * p, c)
    order, _ = _shift_order(h, w, p, shift, x.device)
    return x.reshape(b, h * w, c).index_select(1, order).view(b, -1, p * p, c)


def from_windows(t: Tensor, h: int, w: int, p: int, shift: int = 0) -> Tensor:
    """Inverse of :func:`to_windows`: (B, nW, p * p, C) -> (B, H, W, C)."""
    b, c = t.shape[0], t.shape[-1]
    if not shift:
        return t.reshape(b, h // p, w // p, p, p, c).transpose(2, 3).reshape(b, h, w, c)
    _, inverse = _shift_order(h, w, p, shift, t.device)
    return t.reshape(b, h * w, c).index_select(1, inverse).view(b, h, w, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside p x p windows, optionally shifted (the reference ``WMSA``).

    Operates on channels-last maps. qkv comes from one ``embedding_layer`` whose 3C outputs are
    read as 3h groups of ``head_dim`` (queries of all heads, then keys, then values), plus a learned
    relative position bias ``relative_position_params`` of shape (h, 2p-1, 2p-1).

    Args:
        dim: channels C (input and output).
        head_dim: channels per head; ``dim`` must be a multiple of it.
        window: window size p (even when ``shifted``).
        shifted: use shifted windows (the reference's type "SW") instead of regular ones ("W").
    """

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool = False):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim ({dim}) must be a multiple of head_dim ({head_dim})")
        if window < 1 or (shifted and window % 2):
            raise ValueError(f"window must be positive (and even when shifted), got {window}")
        self.dim, self.head_dim, self.window, self.shifted = dim, head_dim, window, shifted
        self.heads = dim // head_dim
        self.embedding_layer = nn.Linear(dim, 3 * dim)
        self.relative_position_params = nn.Parameter(torch.zeros(self.heads, 2 * window - 1, 2 * window - 1))
        nn.init.trunc_normal_(self.relative_position_params, std=0.02)
        self.linear = nn.Linear(dim, dim)

    def _bias(self) -> Tensor:  # (h, N, N)
        index = _relative_index(self.window).to(self.relative_position_params.device)
        return self.relative_position_params.flatten(1)[:, index]

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        h, w = x.shape[1:3]
        hp, wp = _padded(h, self.window), _padded(w, self.window)
        tokens = to_windows(_pad(x, hp, wp), self.window, self.shift)
        return _crop(from_windows(self.attend(tokens, (hp, wp), (h, w)), hp, wp, self.window, self.shift), h, w)

    @property
    def shift(self) -> int:
        """How far the map is rolled (up and left) before it is cut into windows: p/2 or 0."""
        return self.window // 2 if self.shifted else 0

    def attend(self, tokens: Tensor, padded: tuple[int, int], size: tuple[int, int], first: int = 0) -> Tensor:
        """The attention on tokens already in window order (:func:`to_windows`).

        Args:
            tokens: (B, nW, N, C), windows ``first`` .. ``first + nW - 1`` of the (padded, rolled) map,
                N = p * p (all of them by default; a run of them when a caller works in chunks).
            padded: the map's size (hp, wp) after padding to window multiples.
            size: the map's real size (h, w): queries ignore the keys of padded positions.
            first: index of the first window of ``tokens`` among all windows of the map.

        Returns:
            (B, nW, N, C) in the same order.
        """
        b, nw, n, c = tokens.shape
        qkv = self.embedding_layer(tokens).reshape(b, nw, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, nW, h, N, d)
        bias = self._bias().to(q.dtype)  # (h, N, N)
        out = _attention(q, k, v, bias)
        masks = _window_masks(*padded, *size, self.window, self.shifted, tokens.device)
        if masks is not None:
            ids, mask = masks
            if first or nw != padded[0] * padded[1] // n:  # the masked windows among this run of windows
                keep = (ids >= first) & (ids < first + nw)
                ids, mask = ids[keep] - first, mask[keep]
            if ids.numel():
                masked_bias = bias.unsqueeze(0).masked_fill(mask.unsqueeze(1), float("-inf"))  # (nWm, h, N, N)
                masked = _attention(q[:, ids], k[:, ids], v[:, ids], masked_bias)
                # In place when nothing needs the unmasked result for a backward pass.
                out = out.index_copy(1, ids, masked) if torch.is_grad_enabled() else out.index_copy_(1, ids, masked)
        return self.linear(out.transpose(2, 3).reshape(b, nw, n, c))  # heads concatenated head-major


#: Tokens that an inference pass of a Swin block carries through attention and MLP at once: the
#: intermediates (qkv: 3C, MLP: 4C per token) of a chunk stay in the CPU caches and in reused heap
#: memory, where whole-map intermediates (100 MB at H/2 of a 768x512 image) go to DRAM and, above
#: glibc's mmap threshold, are page-faulted in afresh on every call.
CHUNK_TOKENS = 4096


class SwinBlock(nn.Module):
    """Pre-norm transformer block ``x + msa(ln1(x))``, then ``x + mlp(ln2(x))`` (the reference ``Block``).

    Args:
        dim: channels C.
        head_dim: channels per attention head.
        window: window size p.
        shifted: shifted windows ("SW") instead of regular ones ("W").
        mlp_ratio: hidden width of the MLP relative to C.
    """

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool = False, mlp_ratio: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WindowAttention(dim, head_dim, window, shifted)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C)
        # LayerNorm and MLP act on each token alone, so the whole block runs in window order: one
        # gather into windows and one back, instead of a roll and a partition around the attention.
        h, w = x.shape[1:3]
        p, shift = self.msa.window, self.msa.shift
        hp, wp = _padded(h, p), _padded(w, p)
        t = to_windows(_pad(x, hp, wp), p, shift)  # (B, nW, N, C)
        if torch.is_grad_enabled():
            t = self._tokens(t, (hp, wp), (h, w))
        else:  # a run of windows at a time, updated in place: every op acts within a window or on a token
            if t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                t = t.clone()  # one window across: the window order is a view of the input
            n = t.shape[2]
            step = max(1, CHUNK_TOKENS // (n * t.shape[0]))
            for i in range(0, t.shape[1], step):
                self._tokens(t[:, i : i + step], (hp, wp), (h, w), i, in_place=True)
        return _crop(from_windows(t, hp, wp, p, shift), h, w)

    def _tokens(
        self, t: Tensor, padded: tuple[int, int], size: tuple[int, int], first: int = 0, in_place: bool = False
    ) -> Tensor:
        """Attention and MLP with their residuals on windows ``first`` .. of (B, nW, N, C) tokens; with
        ``in_place`` (inference, ``t`` a fresh copy) the residuals are added into ``t``."""
        if in_place:
            t += self.msa.attend(self.ln1(t), padded, size, first)
            t += self.mlp(self.ln2(t))
            return t
        t = t + self.msa.attend(self.ln1(t), padded, size, first)
        return t + self.mlp(self.ln2(t))
