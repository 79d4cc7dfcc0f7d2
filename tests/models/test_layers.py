"""Memory-layout work of the layers (window order, fused attention, channels-last) computes what the
reference layout computes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tcmcodec.layers import ChannelsLast, SwinBlock, TCMBlock
from tcmcodec.layers.attention import _attention, from_windows, to_windows


def roll_then_partition(x: torch.Tensor, p: int, shift: int) -> torch.Tensor:  # the reference's order
    b, h, w, c = x.shape
    x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    return x.reshape(b, h // p, p, w // p, p, c).transpose(2, 3).reshape(b, -1, p * p, c)


@pytest.mark.parametrize("shift", [0, 4])
def test_window_order_is_the_references_roll_then_partition_and_inverts(shift):
    x = torch.randn(2, 16, 24, 5)
    t = to_windows(x, 8, shift)
    assert torch.equal(t, roll_then_partition(x, 8, shift))
    assert torch.equal(from_windows(t, 16, 24, 8, shift), x)


def test_window_order_reads_a_strided_channel_slice():
    base = torch.randn(1, 16, 16, 12)
    x = base[..., 4:]  # like the transformer half of a channels-last TCM block
    assert torch.equal(to_windows(x, 8, 4), roll_then_partition(x.contiguous(), 8, 4))


def test_fused_attention_equals_the_written_out_softmax_with_and_without_masks():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 16, 8) for _ in range(3))  # (B, nW, h, N, d)
    bias = torch.randn(4, 16, 16)
    per_window = bias.expand(3, -1, -1, -1).clone()
    per_window[1, :, :, 8:] = float("-inf")  # window 1: keys 8.. masked
    for b in (bias, per_window):
        ref = ((q @ k.transpose(-2, -1)) * 8**-0.5 + b).softmax(-1) @ v
        assert torch.allclose(_attention(q, k, v, b), ref, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (13, 21)])  # window multiples, and padded windows
def test_a_tcm_block_computes_the_same_on_channels_last_memory(size):
    torch.manual_seed(0)
    block = TCMBlock(8, 8, head_dim=4, window=8, shifted=True).eval()
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        ref = block(x)
        out = block(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-5)


def test_channels_last_transforms_return_contiguous_maps_and_train():
    torch.manual_seed(0)
    net = ChannelsLast(torch.nn.Conv2d(3, 16, 1, stride=2), SwinBlockNCHW(16), torch.nn.Conv2d(16, 4, 3, padding=1))
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = net(x)
    assert out.is_contiguous() and out.shape == (2, 4, 16, 16)
    out.square().sum().backward()
    ref = torch.nn.Sequential(*net)(x.detach())
    assert torch.allclose(out.detach(), ref, atol=1e-5) and torch.isfinite(x.grad).all()


class SwinBlockNCHW(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.block = SwinBlock(dim, 8, 8, shifted=True)

    def forward(self, x):
        return self.block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


_CHANNELS_LAST_RGB = """
import torch
from tcmcodec.layers import ChannelsLast
torch.manual_seed(0)
torch.set_num_threads(1)
net = ChannelsLast(torch.nn.Conv2d(3, 16, 1, stride=2), torch.nn.Conv2d(16, 4, 3, padding=1))
for _ in range(20):
    x = torch.rand(2, 64, 64, 3).permute(0, 3, 1, 2).requires_grad_()  # channels-last RGB (HWC array)
    net(x).square().sum().backward()
print("ok")
"""


def test_a_channels_last_rgb_input_trains_without_corrupting_the_heap():
    # PyTorch 2.13's CPU backward of a strided 1x1 convolution on 3-channel channels-last input
    # corrupts the heap (an abort, or silently); the transforms make RGB contiguous first. Run in a
    # subprocess so that a regression fails this test instead of killing the test session.
    proc = subprocess.run([sys.executable, "-c", _CHANNELS_LAST_RGB], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-500:]


@pytest.mark.parametrize("size, shifted", [((16, 24), False), ((13, 21), True), ((24, 40), True)])
def test_a_swin_block_at_inference_computes_in_chunks_of_windows_what_it_computes_whole(monkeypatch, size, shifted):
    from tcmcodec.layers import attention

    torch.manual_seed(0)
    block = SwinBlock(8, head_dim=4, window=8, shifted=shifted).eval()
    x = torch.randn(2, *size, 8)  # (B, H, W, C); 13x21 pads to 16x24: masked windows in several chunks
    whole = block(x)  # grad enabled: all windows at once
    monkeypatch.setattr(attention, "CHUNK_TOKENS", 2 * 64 * 2)  # two windows of both images per chunk
    with torch.no_grad():
        chunked = block(x)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-6)
