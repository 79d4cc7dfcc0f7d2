"""Bjøntegaard delta rate / PSNR."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from tcmcodec.evaluation import bdrate

METHODS = ("pchip", "cubic")

# A realistic, unevenly spaced RD curve (Kodak-like: ~0.1 to ~2 bpp, 27 to 40 dB).
BPP = [0.11, 0.19, 0.33, 0.52, 0.86, 1.31, 2.05]
PSNR = [27.4, 29.1, 31.2, 33.0, 35.3, 37.6, 40.1]
MSSSIM = [0.905, 0.937, 0.962, 0.976, 0.987, 0.9925, 0.9960]


def curve(bpp=BPP, psnr=PSNR, msssim=MSSSIM, name="c"):
    return {"name": name, "description": "", "results": {"bpp": list(bpp), "psnr-rgb": list(psnr),
                                                          "ms-ssim-rgb": list(msssim)}}


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_of_a_curve_against_itself_is_zero(method):
    assert bdrate.bd_rate(curve(), curve(), method=method) == pytest.approx(0.0, abs=1e-9)
    assert bdrate.bd_psnr(curve(), curve(), method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_ten_percent_more_bits_at_every_point_is_plus_ten_percent(method):
    more = curve(bpp=[1.1 * b for b in BPP])
    assert bdrate.bd_rate(curve(), more, method=method) == pytest.approx(10.0, abs=0.1)
    # and the anchor, seen from the costlier codec, saves 1 - 1/1.1 = 9.09 %
    assert bdrate.bd_rate(more, curve(), method=method) == pytest.approx(-100 / 11, abs=0.1)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_on_ms_ssim_uses_the_same_rule(method):
    more = curve(bpp=[1.1 * b for b in BPP])
    assert bdrate.bd_rate(curve(), more, method=method, metric="ms-ssim-rgb") == pytest.approx(10.0, abs=0.1)
    assert bdrate.bd_rate(curve(), curve(), method=method, metric="ms-ssim-rgb") == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_of_a_curve_shifted_up_by_half_a_db_is_half_a_db(method):
    up = curve(psnr=[p + 0.5 for p in PSNR])
    assert bdrate.bd_psnr(curve(), up, method=method) == pytest.approx(0.5, abs=1e-6)
    assert bdrate.bd_psnr(up, curve(), method=method) == pytest.approx(-0.5, abs=1e-6)
    # a better curve saves bits
    assert bdrate.bd_rate(curve(), up, method=method) < 0


def test_pchip_and_cubic_agree_on_a_smooth_curve():
    lr = np.linspace(np.log10(0.1), np.log10(2.0), 8)
    bpp = 10**lr
    psnr = 27 + 12 * (lr - lr[0]) / (lr[-1] - lr[0]) - 1.5 * ((lr - lr[0]) / (lr[-1] - lr[0])) ** 2
    test = {"bpp": list(bpp * 0.8), "psnr-rgb": list(psnr + 0.2)}
    a = bdrate.bd_rate({"bpp": list(bpp), "psnr-rgb": list(psnr)}, test, method="pchip")
    b = bdrate.bd_rate({"bpp": list(bpp), "psnr-rgb": list(psnr)}, test, method="cubic")
    assert a == pytest.approx(b, abs=0.3)
    assert a < -20


def test_numpy_pchip_fallback_matches_scipy(monkeypatch, require_module):
    require_module("scipy")
    worse = curve(bpp=[b * (1.05 + 0.03 * i) for i, b in enumerate(BPP)], psnr=[p - 0.1 for p in PSNR])
    with_scipy = bdrate.bd_rate(curve(), worse)
    monkeypatch.setitem(sys.modules, "scipy.interpolate", None)  # makes "from scipy.interpolate import" fail
    without = bdrate.bd_rate(curve(), worse)
    assert without == pytest.approx(with_scipy, abs=1e-9)


def test_accepts_json_paths_and_bare_dicts(tmp_path):
    p = tmp_path / "anchor.json"
    p.write_text(json.dumps(curve()))
    bare = {"bpp": [1.1 * b for b in BPP], "psnr-rgb": PSNR}
    assert bdrate.bd_rate(p, bare) == pytest.approx(10.0, abs=0.1)
    assert bdrate.bd_rate(str(p), p) == pytest.approx(0.0, abs=1e-9)


def test_overlap_is_the_shared_quality_range():
    high = curve(bpp=[2 * b for b in BPP], psnr=[p + 5 for p in PSNR])
    assert bdrate.overlap(curve(), high) == (PSNR[0] + 5, PSNR[-1])


def test_published_tcm_curves_give_the_papers_bd_rates(reference_dir):
    vtm = reference_dir / "vtm.json"
    for size, expected in (("s", -6.7), ("m", -9.1), ("l", -11.7)):
        got = bdrate.bd_rate(vtm, reference_dir / f"tcm-{size}-paper.json")
        assert got == pytest.approx(expected, abs=0.1), size


@pytest.mark.parametrize(
    "anchor, test, kwargs, match",
    [
        (curve(bpp=BPP[:3], psnr=PSNR[:3], msssim=MSSSIM[:3]), curve(), {"method": "cubic"}, "at least 4"),
        (curve(bpp=BPP[:1], psnr=PSNR[:1], msssim=MSSSIM[:1]), curve(), {}, "at least 2"),
        (curve(), curve(psnr=[p + 20 for p in PSNR]), {}, "do not overlap"),
        (curve(), curve(), {"method": "akima"}, "unknown method"),
        (curve(), curve(), {"metric": "vmaf"}, "unknown metric"),
        (curve(bpp=BPP[:-1]), curve(), {}, "bpp values but"),
        (curve(bpp=[0.0] + BPP[1:]), curve(), {}, "> 0"),
        (curve(psnr=[math.nan] + PSNR[1:]), curve(), {}, "finite"),
        (curve(psnr=[PSNR[0]] * 2 + PSNR[2:]), curve(), {}, "distinct"),
        (curve(bpp=BPP[::-1]), curve(), {}, "not monotone"),
        ({"name": "x", "results": {"bpp": BPP}}, curve(), {}, "no 'psnr-rgb'"),
        ([1, 2, 3], curve(), {}, "expected a results dict"),
    ],
)
def test_invalid_input_raises_value_error_with_a_clear_message(anchor, test, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bdrate.bd_rate(anchor, test, **kwargs)


def test_bd_psnr_validates_too():
    with pytest.raises(ValueError, match="at least 4"):
        bdrate.bd_psnr(curve(bpp=BPP[:3], psnr=PSNR[:3], msssim=MSSSIM[:3]), curve(), method="cubic")
    with pytest.raises(ValueError, match="do not overlap"):
        bdrate.bd_psnr(curve(), curve(bpp=[b * 100 for b in BPP]))
