"""Tests for the ``tcm`` command (tcmcodec.cli), run in-process through ``main(argv)`` except where
the real console process matters. The model is the random ``tcm_xs`` saved as a checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tcmcodec import cli, codec
from tcmcodec.cli import demo
from tcmcodec.codec import container as bitstream


@pytest.fixture
def run(capsys):
    """``run(*argv) -> (exit status, stdout, stderr)``."""

    def _run(*argv: object) -> tuple[int, str, str]:
        rc = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return _run


@pytest.fixture(scope="module")
def crop(kodak_dir) -> Image.Image:
    with Image.open(kodak_dir / "kodim23.png") as im:
        return im.convert("RGB").crop((280, 90, 328, 130))  # 48x40


@pytest.fixture
def png(tmp_path, crop) -> Path:
    path = tmp_path / "parrot.png"
    crop.save(path)
    return path


@pytest.fixture
def tcm_file(png, tcm_xs) -> Path:
    path = png.parent / "coded" / "parrot.tcm"
    path.parent.mkdir()
    path.write_bytes(codec.compress(png, tcm_xs))
    return path


def files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tcm: error: ")


# ------------------------------------------------------------------------------------ happy paths


def test_compress_then_decompress_gives_the_api_decode(run, png, tcm_xs, tcm_xs_checkpoint, tmp_path):
    rc, out, err = run("compress", png, "-o", tmp_path / "x.tcm", "--checkpoint", tcm_xs_checkpoint)
    assert (rc, err) == (0, "")
    assert "x.tcm" in out and "bpp" in out
    data = (tmp_path / "x.tcm").read_bytes()
    assert data == codec.compress(png, tcm_xs)

    rc, out, err = run("decompress", tmp_path / "x.tcm", "-o", tmp_path / "y.png", "--checkpoint", tcm_xs_checkpoint)
    assert (rc, err) == (0, "")
    with Image.open(tmp_path / "y.png") as decoded:
        expected = codec.decompress(data, model=tcm_xs)
        assert decoded.mode == expected.mode and np.array_equal(np.asarray(decoded), np.asarray(expected))


def test_compress_does_not_synthesize_the_reconstruction(run, png, tcm_xs_checkpoint, tmp_path, monkeypatch):
    # The encoder-side reconstruction is a whole synthesis pass (40 % of a 4K compress); the command's
    # report (size, mode, bpp) comes from the header instead.
    from tcmcodec.models import TCM

    def no_synthesis(*_args, **_kwargs):
        raise AssertionError("tcm compress ran the synthesis")

    monkeypatch.setattr(TCM, "_reconstruct", no_synthesis)
    rc, out, err = run("compress", png, "-o", tmp_path / "x.tcm", "--checkpoint", tcm_xs_checkpoint)
    assert (rc, err) == (0, "")
    assert "48x40 RGB" in out
    assert f"{8 * (tmp_path / 'x.tcm').stat().st_size / (48 * 40):.4f} bpp" in out


def test_default_outputs_sit_beside_the_inputs_and_are_not_overwritten(run, png, tcm_xs_checkpoint):
    rc, _, err = run("compress", png, "--checkpoint", tcm_xs_checkpoint, "--quality", "2.5", "-q")
    assert (rc, err) == (0, "")
    tcm = png.with_suffix(".tcm")
    assert bitstream.read_header(tcm.read_bytes()).quality == 2.5
    before = tcm.read_bytes()
    rc, _, err = run("compress", png, "--checkpoint", tcm_xs_checkpoint, "-q")
    assert rc == 1 and "already exists" in err
    assert tcm.read_bytes() == before
    rc, _, err = run("compress", png, "--checkpoint", tcm_xs_checkpoint, "-q", "--force")
    assert (rc, err) == (0, "")
    assert bitstream.read_header(tcm.read_bytes()).quality == 4.0
    # decoding beside the input would overwrite parrot.png: refused
    rc, _, err = run("decompress", tcm, "--checkpoint", tcm_xs_checkpoint)
    assert rc == 1 and "parrot.png already exists" in err


def test_many_inputs_go_into_an_output_directory(run, tmp_path, crop, tcm_xs, tcm_xs_checkpoint):
    inputs = []
    for name, img in (("a.png", crop), ("b.png", crop.convert("L")), ("c.png", crop.convert("RGBA"))):
        img.save(tmp_path / name)
        inputs.append(tmp_path / name)
    rc, out, err = run("compress", *inputs, "-o", tmp_path / "coded", "--checkpoint", tcm_xs_checkpoint)
    assert rc == 0, err
    assert files(tmp_path / "coded") == {"a.tcm", "b.tcm", "c.tcm"}
    assert out.count("->") == 3
    rc, _, err = run("decompress", *sorted((tmp_path / "coded").iterdir()), "-o", tmp_path / "decoded",
                     "--checkpoint", tcm_xs_checkpoint, "-q")
    assert rc == 0, err
    for name, mode in (("a", "RGB"), ("b", "L"), ("c", "RGBA")):
        with Image.open(tmp_path / "decoded" / f"{name}.png") as im:
            assert im.mode == mode
            expected = codec.decompress((tmp_path / "coded" / f"{name}.tcm").read_bytes(), model=tcm_xs)
            assert np.array_equal(np.asarray(im), np.asarray(expected))


def test_decompress_writes_the_format_of_the_extension(run, tcm_file, tcm_xs_checkpoint, tmp_path):
    rc, _, err = run("decompress", tcm_file, "-o", tmp_path / "out.bmp", "--checkpoint", tcm_xs_checkpoint)
    assert rc == 0, err
    with Image.open(tmp_path / "out.bmp") as im:
        assert im.format == "BMP"
    rc, _, err = run("decompress", tcm_file, "-o", tmp_path / "out.xyz", "--checkpoint", tcm_xs_checkpoint)
    assert rc == 2
    assert_one_error_line(err)


def test_info_shows_the_header_and_stream_sizes(run, tcm_file):
    data = tcm_file.read_bytes()
    header, streams = bitstream.unpack(data)
    rc, out, err = run("info", tcm_file)
    assert (rc, err) == (0, "")
    assert f"{len(data):,} bytes" in out
    assert "tcm-xs" in out and header.weights_id.hex() in out
    assert "48x40 RGB" in out and "replicate to 64x64" in out
    assert f"y {len(streams['y']):,} B" in out
    rc, out, err = run("info", "--json", tcm_file, tcm_file)
    assert (rc, err) == (0, "")
    info = json.loads(out)
    assert len(info) == 2
    d = info[0]
    assert d["bytes"] == len(data) and d["bpp"] == pytest.approx(8 * len(data) / (48 * 40))
    assert (d["model"], d["quality"], d["width"], d["height"], d["mode"]) == ("tcm-xs", 4.0, 48, 40, "RGB")
    assert d["weights_id"] == header.weights_id.hex() and d["z_shape"] == [1, 1]
    assert d["streams"] == {k: len(v) for k, v in streams.items()}
    assert d["overhead"] == len(data) - sum(map(len, streams.values()))


def test_models_lists_the_registry(run):
    rc, out, err = run("models")
    assert (rc, err) == (0, "")
    assert "tcm-xs" in out and "1..8" in out and "tcm-l" in out
    rc, out, _ = run("models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["tcm-xs"]["quality"] == [1, 8] and rows["tcm-s"]["quality"] is None
    assert rows["tcm-s"]["published"] == [1, 2, 3, 4, 5, 6] and rows["tcm-m"]["published"] == []
    assert isinstance(rows["tcm-xs"]["pretrained"], bool)


# ------------------------------------------------------------------------------------ failures


def _corrupt(tcm_file: Path, how: str) -> Path:
    data = tcm_file.read_bytes()
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped":
        data = data[:30] + bytes([data[30] ^ 0xFF]) + data[31:]
    else:
        data = b"hello, not a tcm file"
    bad = tcm_file.with_name(f"{how}.tcm")
    bad.write_bytes(data)
    return bad


@pytest.mark.parametrize("how", ["truncated", "flipped", "garbage"])
@pytest.mark.parametrize("subcommand", ["decompress", "info"])
def test_corrupt_files_fail_with_one_line_and_no_output(run, tcm_file, tcm_xs_checkpoint, tmp_path, how, subcommand):
    bad = _corrupt(tcm_file, how)
    before = files(tmp_path)
    extra = ["-o", tmp_path / "out.png", "--checkpoint", tcm_xs_checkpoint] if subcommand == "decompress" else []
    rc, out, err = run(subcommand, bad, *extra)
    assert rc == 1
    assert_one_error_line(err)
    assert str(bad) in err
    assert files(tmp_path) == before


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["compress", "{tmp}/missing.png"], 1, "no such file"),
        (["decompress", "{tmp}/missing.tcm"], 1, "no such file"),
        (["info", "{tmp}/missing.tcm"], 1, "no such file"),
        (["compress", "{png}", "--model", "tcm-xxl"], 2, "unknown model 'tcm-xxl'"),
        (["compress", "{png}", "--checkpoint", "{ckpt}", "--quality", "9"], 2, "quality must be in [1, 8]"),
        (["compress", "{png}", "--checkpoint", "{ckpt}", "--quality", "0"], 2, "quality must be in [1, 8]"),
        (["compress", "{png}", "--quality", "high"], 2, "--quality"),
        (["compress", "{png}", "--quality", "nan"], 2, "--quality"),
        (["compress", "{text}", "--checkpoint", "{ckpt}"], 1, "cannot identify image file"),
        (["compress", "{png}", "--checkpoint", "{tmp}/nope.safetensors"], 1, "checkpoint not found"),
        (["compress", "{png}", "--model", "tcm-s", "--checkpoint", "{ckpt}"], 1, "architecture"),
        (["compress", "{png}", "-o", "{png}", "--checkpoint", "{ckpt}"], 2, "overwrite the input"),
        (["compress", "{png}", "-o", "{tmp}/no/such/dir/x.tcm", "--checkpoint", "{ckpt}"], 1, "no such directory"),
        (["decompress", "{tcm}", "--model", "tcm-m", "-o", "{tmp}/o.png"], 1, "no shipped weights for tcm-m"),
        (["decompress", "{tcm}", "--model", "tcm-s", "-o", "{tmp}/o.png"], 1, "tcm weights import FILE --model tcm-s"),
        (["compress", "{png}", "--model", "tcm-s", "--quality", "7"], 2, "published checkpoints at quality 1"),
        (["compress"], 2, "required"),
        (["frobnicate"], 2, "invalid choice"),
        (["compress", "{png}", "--bogus"], 2, "unrecognized arguments"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_expected_failures_print_one_line_and_write_nothing(
    run, tmp_path, png, tcm_file, tcm_xs_checkpoint, argv, status, message
):
    (tmp_path / "text.png").write_text("not an image")
    names = {"tmp": tmp_path, "png": png, "tcm": tcm_file, "ckpt": tcm_xs_checkpoint, "text": tmp_path / "text.png"}
    before = files(tmp_path)
    rc, out, err = run(*[a.format(**names) for a in argv])
    assert rc == status
    assert_one_error_line(err)
    assert message in err
    assert files(tmp_path) == before


def test_a_failure_in_a_batch_keeps_the_finished_outputs_whole(run, tmp_path, png, tcm_xs_checkpoint, tcm_xs):
    bad = tmp_path / "zzz.png"
    bad.write_bytes(png.read_bytes()[:100])  # truncated PNG: fails while decoding
    rc, _, err = run("compress", png, bad, "-o", tmp_path / "out", "--checkpoint", tcm_xs_checkpoint, "-q")
    assert rc == 1
    assert_one_error_line(err)
    assert files(tmp_path / "out") == {"parrot.tcm"}  # no zzz.tcm, no temporary file
    assert (tmp_path / "out" / "parrot.tcm").read_bytes() == codec.compress(png, tcm_xs)


def test_a_batch_goes_on_past_bad_files_and_ends_with_a_summary(run, tmp_path, png, crop, tcm_xs_checkpoint):
    other = tmp_path / "other.png"
    crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    bad = tmp_path / "bad.png"
    bad.write_bytes(png.read_bytes()[:100])
    out = tmp_path / "out"
    rc, stdout, err = run("compress", png, bad, other, "-o", out, "--checkpoint", tcm_xs_checkpoint)
    assert rc == 1
    assert_one_error_line(err)
    assert f"{bad}:" in err
    assert files(out) == {"parrot.tcm", "other.tcm"}
    assert stdout.splitlines()[-1] == "2 written, 1 failed"


def test_skip_existing_resumes_a_batch(run, tmp_path, png, crop, tcm_xs_checkpoint):
    other = tmp_path / "other.png"
    crop.rotate(180).save(other)
    out = tmp_path / "out"
    assert run("compress", png, "-o", f"{out}/", "--checkpoint", tcm_xs_checkpoint, "-q")[0] == 0
    first = (out / "parrot.tcm").stat().st_mtime_ns
    rc, _, err = run("compress", png, other, "-o", out, "--checkpoint", tcm_xs_checkpoint)
    assert rc == 1 and "already exists" in err and "--skip-existing" in err  # refused before any work
    assert files(out) == {"parrot.tcm"}
    rc, stdout, err = run("compress", png, other, "-o", out, "--checkpoint", tcm_xs_checkpoint, "--skip-existing")
    assert (rc, err) == (0, "")
    assert stdout.splitlines()[-1] == "1 written, 0 failed, 1 skipped (output exists)"
    assert files(out) == {"parrot.tcm", "other.tcm"}
    assert (out / "parrot.tcm").stat().st_mtime_ns == first


def test_anchors_and_eval_without_the_eval_extra_say_which_extra_to_install(run, tmp_path, kodak_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_msssim", None)  # as if not installed: import raises ImportError
    for argv in (("anchors", kodak_dir, "-o", tmp_path / "a"), ("eval", kodak_dir)):
        rc, _, err = run(*argv)
        assert rc == 1
        assert_one_error_line(err)
        assert "pip install 'tcmcodec[eval]'" in err
    assert not (tmp_path / "a").exists()


def test_decompress_max_pixels_limits_the_image_size(run, tmp_path, png, tcm_xs_checkpoint):
    assert run("compress", png, "-o", tmp_path / "p.tcm", "--checkpoint", tcm_xs_checkpoint, "-q")[0] == 0
    rc, _, err = run("decompress", tmp_path / "p.tcm", "-o", tmp_path / "p.png", "--max-pixels", "100",
                     "--checkpoint", tcm_xs_checkpoint)
    assert rc == 1 and "exceeds the pixel budget of 100" in err
    assert_one_error_line(err)
    assert not (tmp_path / "p.png").exists()
    rc, _, err = run("decompress", tmp_path / "p.tcm", "-o", tmp_path / "p.png", "--max-pixels", "0",
                     "--checkpoint", tcm_xs_checkpoint, "-q")
    assert (rc, err) == (0, "")


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(cli.CLIError, match="no such file"):
        cli.main(["--debug", "info", str(tmp_path / "missing.tcm")])


def test_the_console_process_prints_one_line_on_errors(tmp_path):
    bad = tmp_path / "bad.tcm"
    bad.write_bytes(b"\x89TCM\x01")
    proc = subprocess.run([sys.executable, "-m", "tcmcodec.cli", "decompress", str(bad), "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr)
    assert "truncated file" in proc.stderr
    assert files(tmp_path) == {"bad.tcm"}


# ------------------------------------------------------------------------------------ demo


def test_demo_without_installed_weights_says_so_in_one_line(run, tmp_path):
    rc, out, err = run("demo", "--model", "tcm-m", "-o", tmp_path / "demo")  # tcm-m has no weights
    assert rc == 1
    assert_one_error_line(err)
    assert "weights are not installed" in err
    assert not (tmp_path / "demo").exists()


def test_demo_bundles_a_512x384_sample_photo():
    from importlib import resources

    with resources.as_file(resources.files("tcmcodec") / "data" / "sample.png") as path:
        with Image.open(path) as im:
            assert (im.size, im.mode) == ((512, 384), "RGB")
    assert (resources.files("tcmcodec") / "data" / "SAMPLE_ATTRIBUTION.md").is_file()


@pytest.mark.slow
def test_demo_compares_with_jpeg_at_the_same_psnr(run, tmp_path, tcm_xs_checkpoint):
    rc, out, err = run("demo", "--checkpoint", tcm_xs_checkpoint, "-o", tmp_path / "demo")
    assert rc == 0, err
    assert "bpp" in out and "PSNR" in out and "bit-exact" in out and "JPEG" in out
    written = files(tmp_path / "demo")
    assert {"sample.png", "sample.tcm", "sample_decoded.png"} <= written
    with Image.open(tmp_path / "demo" / "sample_decoded.png") as im:
        assert im.size == (512, 384)


def test_jpeg_search_returns_the_smallest_quality_reaching_the_target(crop):
    from tcmcodec.evaluation.metrics import psnr

    q, data, p = demo.jpeg_for_psnr(crop, 30.0)
    assert p >= 30.0
    if q > 1:
        below = Image.open(__import__("io").BytesIO(demo._jpeg_bytes(crop, q - 1)))
        assert psnr(crop, below) < 30.0
    assert demo.jpeg_for_psnr(crop, 200.0) is None


# ------------------------------------------------------------------------------------ wrappers


def test_bdrate_wrapper_matches_the_library(run, reference_dir):
    from tcmcodec.evaluation import bdrate

    anchor, test = reference_dir / "jpeg.json", reference_dir / "tcm-s-paper.json"
    rc, out, err = run("bdrate", anchor, test, "--json")
    assert (rc, err) == (0, "")
    (row,) = json.loads(out)
    assert row["bd_rate"] == pytest.approx(bdrate.bd_rate(anchor, test))
    assert row["bd_rate"] < 0 and row["bd_psnr"] > 0
    rc, out, _ = run("bdrate", anchor, test)
    assert rc == 0 and "BD-rate" in out
    parser = cli.build_parser()  # the wrapper offers exactly the library's methods and metrics
    for method in bdrate.METHODS:
        assert parser.parse_args(["bdrate", "a.json", "b.json", "--method", method]).method == method
    for metric in bdrate.METRICS:
        assert parser.parse_args(["bdrate", "a.json", "b.json", "--metric", metric]).metric == metric


def test_plot_wrapper_writes_a_png(run, reference_dir, tmp_path, require_module):
    require_module("matplotlib")
    rc, out, err = run("plot", reference_dir / "jpeg.json", "--reference-dir", reference_dir,
                       "--published", "vtm", "-o", tmp_path / "rd.png")
    assert (rc, err) == (0, "")
    with Image.open(tmp_path / "rd.png") as im:
        assert im.format == "PNG"
    assert files(tmp_path) == {"rd.png"}


def test_anchors_wrapper_measures_jpeg(run, kodak_dir, tmp_path):
    rc, out, err = run("anchors", kodak_dir, "-o", tmp_path, "--codecs", "jpeg", "--sweep", "jpeg=50,90",
                       "--crop", "192", "--max-images", "1", "--workers", "1", "-q")
    assert rc == 0, err
    data = json.loads((tmp_path / "jpeg.json").read_text())
    assert len(data["results"]["bpp"]) == 2


def test_eval_subcommand_writes_results_for_real_files(tmp_path, kodak_dir, tcm_xs_checkpoint):
    from PIL import Image

    from tcmcodec.evaluation import results
    from tcmcodec.cli import main

    data = tmp_path / "images"
    data.mkdir()
    Image.open(kodak_dir / "kodim23.png").crop((0, 0, 192, 176)).save(data / "crop.png")
    out = tmp_path / "r.json"
    code = main(["eval", str(data), "--checkpoint", str(tcm_xs_checkpoint), "--quality", "2,6", "-o", str(out)])
    assert code == 0
    r = results.read_results(out)
    assert len(r["results"]["bpp"]) == 2 and r["mismatches"] == 0
