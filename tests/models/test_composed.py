"""The float64 copy's composed layers (``params.ComposedConv``, ``params.SliceHeads``) compute what the
model's layers compute, to float64 rounding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tcmcodec import create_model
from tcmcodec.models import params


@pytest.mark.parametrize("channels", [params.WINOGRAD_MIN_CHANNELS, 24])  # Winograd, direct
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (16, 24)])
def test_a_composed_convolution_equals_the_pointwise_then_3x3_convolution(channels, size):
    torch.manual_seed(0)
    pointwise = nn.Conv2d(channels, 40, 1).double()
    conv3 = nn.Conv2d(40, 12, 3, padding=1).double()
    composed = params.ComposedConv(conv3.weight, conv3.bias, pointwise)
    params._band_convolutions(composed)  # as in the float64 copy: Winograd filters for wide inputs
    assert (composed.conv.weight is None) == (channels >= params.WINOGRAD_MIN_CHANNELS)
    v = torch.randn(2, channels, *size, dtype=torch.float64)
    with torch.no_grad():
        ref = conv3(pointwise(v))  # the bias of pointwise reaches the border through fewer taps
        out = composed(v)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-12 * ref.abs().mean()


def test_the_float64_copy_computes_the_slice_parameters_of_the_model_in_float64():
    torch.manual_seed(0)
    model = create_model("tcm-xs").eval()
    reference = copy.deepcopy(model).double()  # its own layers in float64: nothing composed
    net = params.param_net(model, torch.float64)
    assert len(net.heads) == model.config.num_slices
    assert all(isinstance(a[0].out_conv, nn.Identity) for a in net.atten_mean)  # replaced by the heads
    c, sd = model.config, model.slice_dim
    means, scales = (torch.randn(1, c.M, 24, 40, dtype=torch.float64) for _ in range(2))
    done: list[torch.Tensor] = []
    with torch.no_grad():
        for i in range(c.num_slices):
            mu, scale, lrp_input = model._slice_params(i, means, scales, done, net)
            ref_mu, ref_scale, ref_support = reference._slice_params(i, means, scales, done)
            y_hat = torch.round(torch.randn(1, sd, 24, 40, dtype=torch.float64) * 3) + mu
            out, ref = model._lrp(i, lrp_input, y_hat, net), reference._lrp(i, ref_support, y_hat)
            for a, b in ((mu, ref_mu), (scale, ref_scale), (out, ref)):
                assert a.dtype == torch.float64 and a.shape == b.shape
                assert (a - b).abs().max() <= 1e-12 * b.abs().mean()
            done.append(out)
    assert ref_mu.abs().mean() > 1e-3  # not trivially: the parameters are not all zero
