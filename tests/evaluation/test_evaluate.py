"""tcm eval (tcmcodec.evaluation.evaluate) and the codec benchmark script: fast checks on two small Kodak crops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tcmcodec.codec import container as bitstream
from tcmcodec.evaluation import results
from tcmcodec.cli import main as tcm_main
from tcmcodec.evaluation.evaluate import evaluate, parse_qualities

ROOT = Path(__file__).resolve().parents[2]
# MS-SSIM needs both sides >= 161: the smallest crops that it can measure, padded to 192x192.
CROP_W, CROP_H = 192, 176


@pytest.fixture(scope="module")
def dataset(kodak_dir, tmp_path_factory) -> Path:
    """Two Kodak crops of 192x176 in a folder."""
    d = tmp_path_factory.mktemp("crops")
    for name in ("kodim01.png", "kodim23.png"):
        with Image.open(kodak_dir / name) as im:
            im.convert("RGB").crop((200, 150, 200 + CROP_W, 150 + CROP_H)).save(d / name)
    return d


@pytest.fixture(scope="module")
def real(dataset, tcm_xs) -> dict:
    return evaluate(dataset, tcm_xs, qualities="1,8", per_image=True, progress=False)


@pytest.fixture(scope="module")
def estimated(dataset, tcm_xs) -> dict:
    return evaluate(dataset, tcm_xs, qualities=[1, 8], estimate=True, progress=False)


def test_results_validate_against_the_results_schema(real):
    assert results.validate(real, strict=True)
    assert set(results.REQUIRED_KEYS) <= set(real["results"])


def test_results_have_one_entry_per_quality(real):
    for key, values in real["results"].items():
        assert len(values) == 2, key
    assert sorted(real["settings"]["values"]) == [1.0, 8.0]
    assert real["settings"]["parameter"] == "quality"


def test_bpp_is_the_file_size_including_the_header(real, dataset, tcm_xs):
    from tcmcodec import codec

    rows = real["per_image"]
    assert len(rows) == 2 * 2
    row = next(r for r in rows if r["image"] == "kodim23.png" and r["param"] == 8.0)
    data = codec.compress(dataset / "kodim23.png", tcm_xs, 8.0)
    assert row["bytes"] == len(data)
    assert row["bpp"] == pytest.approx(len(data) * 8 / (CROP_W * CROP_H))
    header, streams = bitstream.unpack(data)
    assert len(data) > sum(len(s) for s in streams.values())  # the header counts too
    point = real["settings"]["values"].index(8.0)
    mean = sum(r["bpp"] for r in rows if r["param"] == 8.0) / 2
    assert real["results"]["bpp"][point] == pytest.approx(mean)


def test_decoded_images_match_the_encoder_reconstruction(real):
    assert real["mismatches"] == 0
    assert all(r["exact"] for r in real["per_image"])


def test_estimate_is_labelled_estimated(estimated):
    assert "estimated" in estimated["name"]
    assert "estimated" in estimated["description"].lower()
    assert estimated["settings"]["mode"] == "estimate"
    assert estimated["mismatches"] is None
    assert results.validate(estimated, strict=True)
    assert len(estimated["results"]["bpp"]) == 2


def test_estimated_rate_is_close_to_the_real_rate_without_the_header(real, estimated):
    for q in (1.0, 8.0):
        est = estimated["results"]["bpp"][estimated["settings"]["values"].index(q)]
        act = real["results"]["bpp"][real["settings"]["values"].index(q)]
        assert 0.5 * act < est < 1.5 * act


@pytest.mark.parametrize("spec", ["", "abc", "1,,2", "3-1", "1:8", "1:8:0", "nan", "0", "9", "1-9"])
def test_bad_quality_spec_is_a_value_error(dataset, tcm_xs, spec):
    with pytest.raises(ValueError):
        evaluate(dataset, tcm_xs, qualities=spec, progress=False)


def test_quality_specs_parse_to_lists():
    assert parse_qualities("1,2,3") == [1.0, 2.0, 3.0]
    assert parse_qualities("1-8") == [float(q) for q in range(1, 9)]
    assert parse_qualities("1:2:0.5") == [1.0, 1.5, 2.0]
    assert parse_qualities("2,1-3") == [2.0, 1.0, 3.0]
    assert parse_qualities(None) is None


def test_fixed_rate_models_take_no_quality(dataset):
    with pytest.raises(ValueError, match="fixed rate"):
        evaluate(dataset, "tcm-m", qualities="1", progress=False)
    with pytest.raises(ValueError, match="published checkpoints at quality 1 .*got 7"):
        evaluate(dataset, "tcm-s", qualities="7", progress=False)


def test_fixed_rate_models_give_the_single_rate_point_of_their_weights(dataset):
    import torch

    from tcmcodec.models import TCM, TCMConfig

    tiny = TCMConfig(N=8, M=32, z_channels=16, num_slices=2, max_support_slices=2, depths=(1,) * 6,
                     head_dims=(8,) * 6, hyper_depth=1, hyper_head_dim=8, atten_inter_dim=16, atten_head_dim=8,
                     cc_hidden=(16, 16))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TCM(tiny).eval()
    data = evaluate(dataset, model, progress=False, per_image=True)
    assert len(data["results"]["bpp"]) == 1
    assert data["settings"]["values"] == [None] and data["settings"]["parameter"] is None
    assert data["mismatches"] == 0 and len(data["per_image"]) == 2
    assert data["name"] == "custom"


def test_missing_folder_and_empty_folder_are_value_errors(tmp_path, tcm_xs):
    with pytest.raises(ValueError, match="not found"):
        evaluate(tmp_path / "nope", tcm_xs, progress=False)
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        evaluate(tmp_path, tcm_xs, progress=False)


def test_run_writes_a_results_file(dataset, tcm_xs_checkpoint, tmp_path, capsys):
    out = tmp_path / "res" / "tcm.json"
    assert tcm_main(["eval", str(dataset), "--checkpoint", str(tcm_xs_checkpoint), "--quality", "4",
                     "-o", str(out), "-q"]) == 0
    data = results.read_results(out, strict=True)
    assert data["name"] == "tcm-xs" and data["mismatches"] == 0
    assert "per_image" not in data
    assert "tcm-xs q4" in capsys.readouterr().out


def test_bench_codec_prints_valid_json(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_codec.py"), "--sizes", "64x64", "--repeats", "1",
         "--model", "tcm-xs", "--coder-symbols", "20000", "--baseline"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    (entry,) = data["sizes"]
    assert entry["size"] == "64x64" and "error" not in entry, entry
    assert entry["encode_s"] > 0 and entry["decode_s"] > 0 and entry["peak_rss_mib"] > 0
    assert entry["exact"] is True
    assert entry["jpeg"]["encode_s"] > 0 and entry["ratio_vs_jpeg"]["encode"] > 0
    assert data["entropy_coder"]["encode_symbols_per_s"] > 0
    assert data["machine"]["cpu_count"] >= 1
