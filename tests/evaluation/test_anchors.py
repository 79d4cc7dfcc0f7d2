"""Classical codec anchors (real encode + decode), the results JSON format and the metrics."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from tcmcodec.evaluation import codecs as anchor_codecs
from tcmcodec.evaluation import anchors
from tcmcodec.evaluation import metrics
from tcmcodec.evaluation import results

AVAILABLE = anchors.available_codecs()
CROP = 256  # >= 161 px so that MS-SSIM is defined


def _quick_sweep(key: str) -> tuple:
    v = anchors.CODECS[key].values
    return (v[1], v[len(v) // 2], v[-2])  # low, middle, high quality


@pytest.fixture(scope="module")
def two_images(kodak_dir):
    return [kodak_dir / "kodim05.png", kodak_dir / "kodim23.png"]  # a busy one and a smooth one


@pytest.fixture(scope="module")
def quick_results(two_images):
    """Every available codec on 2 Kodak images cropped to 256x256, 3 sweep points each (one process)."""
    keys = [k for k, reason in AVAILABLE.items() if reason is None]
    return anchors._measure_many(keys, two_images, {k: _quick_sweep(k) for k in keys}, workers=1,
                                 crop=CROP, dataset="kodak", progress=None)


@pytest.mark.parametrize("key", list(anchors.CODECS))
def test_anchor_curves_are_monotone_in_quality(key, quick_results, missing_optional):
    if AVAILABLE[key] is not None:
        missing_optional(f"{key}: {AVAILABLE[key]}")
    data = quick_results[key]
    results.validate(data, strict=True)
    # mean over the two images per sweep point, in sweep order (low -> high quality)
    by_point = {a["point"]: a for a in results.average_rows(data["per_image"])}
    points = [by_point[i] for i in sorted(by_point)]
    bpp = [p["bpp"] for p in points]
    psnr = [p["psnr-rgb"] for p in points]
    msssim = [p["ms-ssim-rgb"] for p in points]
    assert all(b2 > b1 for b1, b2 in zip(bpp, bpp[1:])), bpp
    assert all(p2 > p1 for p1, p2 in zip(psnr, psnr[1:])), psnr
    assert all(m2 > m1 for m1, m2 in zip(msssim, msssim[1:])), msssim
    assert 0.03 < bpp[0] and bpp[-1] < 8, bpp
    assert 20 < psnr[0] and psnr[-1] < 60, psnr
    # every image really went through the codec and the per-image rows are complete
    assert len(data["per_image"]) == 2 * 3
    for row in data["per_image"]:
        assert row["bytes"] > 0 and row["encoding_time"] >= 0 and row["decoding_time"] >= 0
        assert row["bpp"] == pytest.approx(row["bytes"] * 8 / CROP**2)
    assert data["settings"]["codec"] == key and data["settings"]["library"] in data["description"]


def test_jpeg_444_costs_more_bits_than_420_at_equal_quality_setting(quick_results, missing_optional):
    if AVAILABLE["jpeg"] or AVAILABLE["jpeg444"]:
        missing_optional("no JPEG")
    b420 = quick_results["jpeg"]["results"]["bpp"]
    b444 = quick_results["jpeg444"]["results"]["bpp"]
    assert all(b > a for a, b in zip(b420, b444))


@pytest.mark.parametrize("key", list(anchors.CODECS))
def test_encode_decode_round_trip_keeps_the_size(key, two_images, missing_optional):
    if AVAILABLE[key] is not None:
        missing_optional(f"{key}: {AVAILABLE[key]}")
    from PIL import Image

    img = Image.open(two_images[0]).convert("RGB").crop((0, 0, 96, 64))  # odd chroma-friendly small size
    data = anchors.encode(key, img, anchors.CODECS[key].values[-1])
    out = anchors.decode(key, data)
    assert isinstance(data, bytes) and out.size == img.size and out.mode == "RGB"
    assert metrics.psnr(img, out) > 28


def test_run_writes_one_json_per_codec_and_skips_missing_libraries(two_images, tmp_path, monkeypatch, capsys):
    def missing(self):
        raise ImportError("imagecodecs is not installed")

    monkeypatch.setattr(type(anchor_codecs.CODECS["jpegxl"]), "check", missing)
    paths = anchors.run(two_images[0].parent, tmp_path, codecs=["jpeg", "jpegxl"], workers=1, crop=CROP,
                        max_images=1, qualities={"jpeg": (20, 80)})
    assert paths == [tmp_path / "jpeg.json"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tcm anchors: skipping jpegxl: imagecodecs is not installed"]
    data = results.read_results(paths[0], strict=True)
    assert data["name"] == "JPEG 4:2:0" and len(data["results"]["bpp"]) == 2
    assert "libjpeg" in data["description"] and "Pillow" in data["description"]


def test_run_in_a_process_pool_matches_one_process(two_images, tmp_path, missing_optional):
    if AVAILABLE["jpeg"]:
        missing_optional("no JPEG")
    kw = dict(codecs=["jpeg"], crop=CROP, qualities={"jpeg": (30, 70)})
    (one,) = anchors.run(two_images[0].parent, tmp_path / "one", workers=1, max_images=2, **kw)
    (two,) = anchors.run(two_images[0].parent, tmp_path / "two", workers=2, max_images=2, **kw)
    r1, r2 = (json.loads(p.read_text())["results"] for p in (one, two))
    assert r1["bpp"] == r2["bpp"] and r1["psnr-rgb"] == r2["psnr-rgb"]


def test_run_rejects_unknown_codecs(tmp_path, kodak_dir):
    with pytest.raises(ValueError, match="unknown codec"):
        anchors.run(kodak_dir, tmp_path, codecs=["jpeg", "bpg2"])


# ------------------------------------------------------------------------------------------ results


def _rows():
    rows = []
    for image in ("a.png", "b.png"):
        for point, (bpp, psnr, ms) in enumerate([(0.2, 28.0, 0.93), (0.5, 32.0, 0.97), (1.1, 36.0, 0.99)]):
            off = 0.01 if image == "b.png" else 0.0
            rows.append({"image": image, "point": point, "param": 10 * point, "bpp": bpp + off,
                         "psnr-rgb": psnr + off, "ms-ssim-rgb": ms, "encoding_time": 0.1,
                         "decoding_time": 0.01})
    return rows


def test_results_writer_output_validates_against_the_schema(tmp_path):
    data = results.make_results("X", "a test codec", _rows(), settings={"parameter": "quality"})
    path = results.write_results(tmp_path / "sub" / "x.json", data)
    loaded = json.loads(path.read_text())
    assert results.validate(loaded, strict=True)["name"] == "X"
    assert set(results.REQUIRED_KEYS) <= set(loaded["results"])
    assert loaded["results"]["bpp"] == pytest.approx([0.205, 0.505, 1.105])
    assert loaded["results"]["ms-ssim-rgb-db"][0] == pytest.approx(-10 * math.log10(1 - 0.93))
    assert len(loaded["per_image"]) == 6
    import jsonschema  # the dev extra

    jsonschema.validate(loaded, results.SCHEMA)


def test_results_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text("previous")
    data = results.make_results("X", "a test codec", _rows())

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        results.write_results(path, data)
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind
    monkeypatch.undo()
    assert results.read_results(results.write_results(path, data), strict=True)["name"] == "X"


def test_published_files_validate_leniently(reference_dir):
    for path in sorted(reference_dir.glob("*.json")):
        data = results.read_results(path)
        assert len(data["results"]["bpp"]) >= 2


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("name"), "name"),
        (lambda d: d["results"].pop("encoding_time"), "encoding_time"),
        (lambda d: d["results"]["psnr-rgb"].pop(), "expected 3"),
        (lambda d: d["results"]["bpp"].__setitem__(0, -1.0), "> 0"),
        (lambda d: d["results"]["psnr-rgb"].__setitem__(0, math.nan), "finite"),
        (lambda d: d["results"]["ms-ssim-rgb"].__setitem__(0, 1.5), r"\[0, 1\]"),
        (lambda d: d["results"]["bpp"].__setitem__(0, "0.2"), "not a number"),
    ],
)
def test_results_validator_rejects_malformed_files(mutate, match):
    data = results.make_results("X", "", _rows(), per_image=False)
    data = json.loads(json.dumps(data))
    mutate(data)
    with pytest.raises(ValueError, match=match):
        results.validate(data, strict=True)


# ------------------------------------------------------------------------------------------ metrics


def test_psnr_is_10_log10_of_peak_over_mse():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 3  # MSE = 9 / 3 = 3 over all channels
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3))
    assert metrics.psnr(a, a) == math.inf


def test_metrics_accept_pil_arrays_and_float_tensors(two_images):
    import torch
    from PIL import Image

    img = Image.open(two_images[0]).convert("RGB").crop((0, 0, 200, 180))
    arr = np.asarray(img)
    noisy = np.clip(arr.astype(int) + np.random.default_rng(0).integers(-6, 7, arr.shape), 0, 255).astype(np.uint8)
    t = torch.from_numpy(noisy).permute(2, 0, 1).unsqueeze(0).float() / 255
    assert metrics.psnr(img, noisy) == pytest.approx(metrics.psnr(arr, t))
    ms = metrics.ms_ssim(img, t)
    assert 0.9 < ms < 1.0
    assert metrics.ms_ssim_db(img, noisy) == pytest.approx(-10 * math.log10(1 - ms), rel=1e-5)
    assert metrics.ms_ssim(arr, arr) == pytest.approx(1.0)
    assert math.isnan(metrics.ms_ssim(arr[:100], noisy[:100]))  # too small for 5 scales
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(arr, arr[:10])
