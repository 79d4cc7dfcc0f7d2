"""Winograd 3x3 convolutions of the float64 entropy-parameter path compute what ``F.conv2d`` computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tcmcodec.models import params, winograd


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (5, 7), (32, 48), (33, 47)])
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_convolution_equals_the_direct_one_to_float64_rounding(size, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(20, 12, 3, padding=1, bias=bias).double()
    x = torch.randn(2, 20, *size, dtype=torch.float64)
    out = winograd.conv3x3(F.pad(x, (1, 1, 1, 1)), winograd.filters(conv.weight.detach()), conv.bias)
    ref = conv(x)
    assert out.shape == ref.shape and out.is_contiguous()
    assert (out - ref).abs().max() <= 1e-13 * ref.abs().mean()  # ~5e-15 measured; float32 would be ~1e-7


def test_winograd_filters_of_a_channel_slice_are_a_slice_of_the_filters():
    w = torch.randn(6, 10, 3, 3, dtype=torch.float64)
    assert torch.allclose(winograd.filters(w)[:, :, 3:7], winograd.filters(w[:, 3:7]), rtol=0, atol=1e-15)


def test_the_float64_copy_convolves_wide_3x3_inputs_by_winograd_in_bands_and_by_channel_ranges(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(params.WINOGRAD_MIN_CHANNELS, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    holder = nn.Module()
    holder.cc_mean_transforms = model  # param_net copies the entropy-parameter modules by name
    net = params.param_net(holder, torch.float64)
    wide, narrow = net.cc_mean_transforms[0], net.cc_mean_transforms[1]
    assert getattr(wide, "_winograd", None) is not None and getattr(narrow, "_winograd", None) is None
    assert wide.weight is None and narrow.weight is not None  # the filters replace the weights
    weight, bias = model[0].weight.detach().double(), model[0].bias.detach().double()
    x = torch.randn(1, params.WINOGRAD_MIN_CHANNELS, 37, 29, dtype=torch.float64)
    whole = wide(x)
    ref = F.conv2d(x, weight, bias, padding=1)
    assert (whole - ref).abs().max() <= 1e-13 * ref.abs().mean()
    monkeypatch.setattr(params, "BAND_BYTES", 4 * x.shape[1] * 29 * 8 * 6)  # 6 rows a band: 7 bands
    assert torch.allclose(wide(x), whole, rtol=0, atol=1e-12)
    part = params.banded_conv2d(x[:, 40:100], wide, (40, 100), bias=False)
    assert torch.allclose(part, F.conv2d(x[:, 40:100], weight[:, 40:100], None, padding=1), rtol=0, atol=1e-12)

