"""Architecture variants of the TCM family (``TCMConfig.cnn_stages``, ``TCMConfig.haar_shortcuts``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tcmcodec.layers import HaarDown, HaarUp, ResidualBlock, TCMBlock
from tcmcodec.layers.haar import haar, inverse_haar
from tcmcodec.models import TCM, TCMConfig
from tcmcodec.models.tiling import Tiling, analyze

TINY = TCMConfig(N=8, M=16, z_channels=8, num_slices=2, max_support_slices=2, head_dims=(4,) * 6, window=4,
                 hyper_head_dim=4, atten_inter_dim=8, atten_head_dim=4, atten_window=4, cc_hidden=(8, 8))


def test_the_haar_level_is_orthonormal_and_inverts():
    x = torch.randn(2, 5, 8, 12, dtype=torch.float64)
    t = haar(x)
    assert t.shape == (2, 20, 4, 6)
    assert torch.allclose(t.norm(), x.norm())
    assert torch.allclose(inverse_haar(t), x)
    assert torch.allclose(t[:, :5], x.reshape(2, 5, 4, 2, 6, 2).sum((3, 5)) / 2)  # LL: block sums / 2


def test_haar_links_compute_haar_then_scale_then_projection_as_one_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    down, up = HaarDown(3, 12).double(), HaarUp(12, 3).double()
    assert torch.allclose(down(x).norm(), x.norm())  # 12 -> 12: orthogonal at init
    with torch.no_grad():
        for link in (down, up):
            link.log_scale.normal_()
    steps = down.proj(haar(x) * down.log_scale.exp()[:, None, None])
    assert torch.allclose(down(x), steps)
    y = torch.randn(2, 12, 4, 4, dtype=torch.float64)
    assert torch.allclose(up(y), inverse_haar(up.proj(y) * (-up.log_scale).exp()[:, None, None]))


def test_cnn_stages_replace_the_outer_tcm_blocks_with_residual_blocks():
    model = TCM(dataclasses.replace(TINY, cnn_stages=2))
    kinds = [type(m) for m in model.g_a] + [type(m) for m in model.g_s]
    assert kinds.count(ResidualBlock) == 8 and kinds.count(TCMBlock) == 4  # 2 stages x 2 blocks, each side
    assert type(model.g_a[7]) is TCMBlock and type(model.g_s[1]) is TCMBlock  # H/8 keeps TCM blocks
    with pytest.raises(ValueError, match="cnn_stages"):
        TCMConfig(cnn_stages=4)


def test_a_model_with_haar_shortcuts_trains_and_tiles_its_analysis_with_the_shortcuts():
    torch.manual_seed(0)
    model = TCM(dataclasses.replace(TINY, haar_shortcuts=True))
    x = torch.rand(1, 3, 128, 128)
    out = model(x)
    out["x_hat"].square().mean().backward()
    assert model.g_a_links[0].proj.weight.grad is not None and model.g_s_links[3].log_scale.grad is not None
    model.eval()
    with torch.no_grad():
        whole = analyze(model.analysis, x, Tiling())
        tiled = analyze(model.analysis, x, Tiling(tile=4, overlap=4))  # the first tile's context: all of x
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled[..., :4, :4], whole[..., :4, :4], atol=1e-5)
    assert not torch.allclose(whole, model.g_a(x).detach(), atol=1e-3)  # the shortcuts are in the analysis


def test_a_model_with_haar_shortcuts_decodes_its_own_reconstruction_bit_exactly(kodak_dir):
    import numpy as np

    from tcmcodec.codec.image import load_image

    torch.manual_seed(0)
    model = TCM(dataclasses.replace(TINY, haar_shortcuts=True, num_gains=8)).eval()
    photo = np.asarray(load_image(kodak_dir / "kodim23.png"))[:128, :192]
    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).unsqueeze(0)
    with torch.inference_mode():
        streams = model.compress(x, 5.0, return_x_hat=True)
        decoded = model.decompress(streams, 5.0, dtype=torch.uint8)
    assert torch.equal(decoded, streams.x_hat)
