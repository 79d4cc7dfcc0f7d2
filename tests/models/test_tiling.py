"""Tiled analysis and reconstruction: tiles cover the image exactly, files record their tiling, decoding
stays bit-exact with the encoder's reconstruction, and the tiles cost almost nothing in quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcmcodec import FormatError, codec, zoo
from tcmcodec.codec import container as bitstream
from tcmcodec.codec.image import load_image
from tcmcodec.codec.tiles import tiling_for
from tcmcodec.models import bands
from tcmcodec.models.tiling import ALIGN, Tiling, auto_tiling


@pytest.mark.parametrize("n, tile", [(4, 4), (48, 16), (68, 64), (132, 64), (200, 12)])
def test_tile_cores_cover_the_axis_exactly_on_the_alignment_grid(n, tile):
    spans = Tiling(tile, 8).spans(n)
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (a, b, c, d), nxt in zip(spans, spans[1:] + [(n, n, n, n)]):
        assert b == nxt[0] and a % ALIGN == 0 and c % ALIGN == 0 and 0 < b - a <= tile
        assert c == max(0, a - 8) and d == min(n, b + 8)


def test_bad_tilings_are_value_errors():
    for kw in ({"tile": 6}, {"tile": -4}, {"overlap": 2}, {"tile": 2048}, {"tile": True}):
        with pytest.raises(ValueError, match="multiple of 4"):
            Tiling(**kw)
    with pytest.raises(ValueError, match="multiple of 64 pixels"):
        codec.Codec("tcm-xs", tile=100)


def test_small_images_are_untiled_and_large_ones_tiled_by_default():
    assert not auto_tiling(64, 48).active(64, 48)
    assert auto_tiling(68, 48).active(68, 48)


def z(h: int, w: int) -> tuple[int, int]:  # the header's z shape of an h x w image
    return h // 64, w // 64


def test_the_codec_tiles_only_images_whose_transforms_exceed_one_tiles_memory():
    xs, s = zoo.create_model("tcm-xs"), zoo.create_model("tcm-s")
    assert tiling_for(z(512, 768), None, s) == Tiling()  # Kodak: wider than a tcm-s tile, fits its memory
    assert tiling_for(z(768, 1024), None, s).tile == 44
    assert tiling_for(z(1024, 1280), None, xs) == Tiling()
    assert tiling_for(z(1088, 1920), None, xs).tile == 64
    assert tiling_for(z(512, 768), 256, s).tile == 16  # an explicit tile is used as given


@pytest.fixture(scope="module")
def photo(kodak_dir) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(load_image(kodak_dir / "kodim23.png"))[:256, :384])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_a_tiled_file_records_its_tiling_and_decodes_bit_exactly(photo):
    c = codec.Codec("tcm-xs", tile=128)  # 8x8-latent cores: 3x2 tiles on a 384x256 image
    data, rec = c.compress_with_reconstruction(photo, 4)
    header, streams = bitstream.unpack(data)
    assert header.version == bitstream.TILED_VERSION and streams["tiles"] == bytes([2, 1])
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(rec))
    untiled = codec.Codec("tcm-xs", tile=0)
    data0, rec0 = untiled.compress_with_reconstruction(photo, 4)
    assert bitstream.unpack(data0)[0].version == bitstream.VERSION and "tiles" not in bitstream.unpack(data0)[1]
    # The shipped weights: tiles of 128 px with 64 px of context cost little (measured on Kodak: docs).
    assert abs(_psnr(photo, np.asarray(rec)) - _psnr(photo, np.asarray(rec0))) < 0.1
    assert abs(len(data) - len(data0)) < 0.03 * len(data0)


def test_a_tiled_file_without_its_tiling_is_a_format_error(photo):
    data = codec.compress(photo, "tcm-xs", 4, tile=128)
    header, streams = bitstream.unpack(data)
    for bad in ({k: v for k, v in streams.items() if k != "tiles"}, {**streams, "tiles": b"\x00\x01"},
                {**streams, "tiles": b"\x02"}):
        with pytest.raises(FormatError, match="'tiles' stream"):
            codec.decompress(bitstream.pack(header, bad))


def test_the_tiled_reconstruction_of_the_model_matches_the_untiled_one_away_from_the_seams(tcm_xs, photo):
    x = torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0)  # (1, 3, 256, 384) uint8
    with torch.inference_mode():
        whole = tcm_xs.compress(x, 4.0, return_x_hat=True)
        tiled = tcm_xs.compress(x, 4.0, return_x_hat=True, tiling=Tiling(8, 8))
    assert whole.x_hat.dtype == torch.uint8 and whole.x_hat.shape == (1, 3, 256, 384)
    diff = (whole.x_hat.int() - tiled.x_hat.int()).abs()
    assert diff.float().mean() < 2.0  # random weights: tiles change the context near the seams only


@pytest.mark.parametrize("kernel, padding", [(3, 1), (1, 0), (5, 2)])
def test_float64_convolutions_in_bands_of_rows_give_the_same_values_up_to_float64_rounding(monkeypatch, kernel, padding):
    from torch import nn

    from tcmcodec.models import params

    torch.manual_seed(0)
    conv = nn.Conv2d(40, 24, kernel, padding=padding).double()
    x = torch.randn(1, 40, 97, 53, dtype=torch.float64)
    monkeypatch.setattr(params, "BAND_BYTES", 40 * kernel * kernel * 53 * 8 * 7)  # 7 rows a band: 14 bands
    # Bit-equal on some BLAS builds, not on others (AMD EPYC: 2e-15 apart): the GEMMs differ in shape.
    assert torch.allclose(params._banded_forward(conv, x), conv(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("h", [65, 135, 270])
def test_entropy_parameter_bands_cover_the_rows_with_aligned_context_of_at_least_the_reach(h):
    config = zoo.create_model("tcm-xs").config
    win, r = config.atten_window, bands.reach(config)
    plan = bands.row_bands(h, 480, config, budget=8 * 280 * 480 * 64)  # 64 rows a band, context included
    assert plan[0][0] == 0 and plan[-1][1] == h
    for (r0, r1, a0, a1), nxt in zip(plan, plan[1:] + [(h,)]):
        assert r1 == nxt[0] and r0 % win == 0 and a0 % win == 0 and (a1 % win == 0 or a1 == h)
        assert a0 == 0 or r0 - a0 >= r
        assert a1 == h or a1 - r1 >= r
    assert bands.row_bands(64, 480, config, budget=8 * 280 * 480 * 64) is None
    assert bands.row_bands(136, 240, config) is None  # 3840x2160 with tcm-xs: whole


def test_entropy_parameters_in_bands_of_rows_code_the_same_streams(monkeypatch, kodak_dir):
    photo = np.asarray(load_image(kodak_dir / "kodim04.png"))[:, :256]  # portrait: (768, 256, 3)
    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).unsqueeze(0)
    model = zoo.create_model("tcm-xs", pretrained=True)
    with torch.inference_mode():
        whole = model.compress(x, 4.0, return_x_hat=True)
        monkeypatch.setattr(bands, "BAND_BUDGET", 1)  # 8-row cores: 6 bands of the 48 latent rows
        monkeypatch.setattr(bands, "HYPER_BUDGET", 0)  # and the hyper-synthesis band by band (HyperRows)
        assert len(bands.row_bands(48, 16, model.config)) == 6
        banded = model.compress(x, 4.0, return_x_hat=True)
        decoded = model.decompress(whole, 4.0, dtype=torch.uint8)
    assert banded.checks == whole.checks and banded.y == whole.y and banded.z == whole.z
    assert torch.equal(banded.x_hat, whole.x_hat) and torch.equal(decoded, whole.x_hat)


@pytest.mark.parametrize("zh", [23, 40])
def test_hyper_synthesis_rows_of_a_band_equal_the_whole_outputs_rows(zh):
    # The entropy parameters of banded latents read the hyper-synthesis band by band (bands.HyperRows):
    # its rows must be the whole map's up to float64 summation order, for every band.
    from tcmcodec.models.params import param_net

    model = zoo.create_model("tcm-xs", pretrained=True)
    net = param_net(model, torch.float64)
    z = torch.randn(1, model.config.z_channels, zh, 6, generator=torch.Generator().manual_seed(zh), dtype=torch.float64)
    h, w = 4 * zh - 3, 24  # a latent that does not fill the last z row
    plan = bands.row_bands(h, w, model.config, budget=1)  # 8-row cores
    with torch.inference_mode():
        whole = net.h_mean_s(z)[:, :, :h, :w]
        lazy = bands.HyperRows(net.h_mean_s, z, (h, w), model.config)
        for _, _, a0, a1 in plan:
            assert torch.allclose(lazy.rows(a0, a1), whole[:, :, a0:a1], rtol=0, atol=1e-12), (a0, a1)
        assert torch.allclose(bands.banded(lambda t: t, [lazy], plan), whole, rtol=0, atol=1e-12)
