"""RD plots."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tcmcodec.evaluation import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curve(name, shift=0.0):
    return {
        "name": name,
        "description": "",
        "results": {
            "bpp": [0.15, 0.3, 0.6, 1.2],
            "psnr-rgb": [28 + shift, 31 + shift, 34 + shift, 37.5 + shift],
            "ms-ssim-rgb": [0.93, 0.962, 0.981, 0.991],
        },
    }


def test_plot_writes_a_png(tmp_path, require_module):
    require_module("matplotlib")
    out = plot.plot_rd([_curve("A"), _curve("B", 1.0)], tmp_path / "img" / "rd.png", title="test")
    data = out.read_bytes()
    assert out == tmp_path / "img" / "rd.png"
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_overlays_published_curves_including_psnr_only_ones(tmp_path, reference_dir, require_module):
    require_module("matplotlib")
    src = tmp_path / "a.json"
    import json

    src.write_text(json.dumps(_curve("A")))
    out = plot.plot_rd([src], tmp_path / "rd.png", reference_dir=reference_dir)  # tcm-*-paper: PSNR only
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_plot_reports_a_missing_published_curve(tmp_path, reference_dir, require_module):
    require_module("matplotlib")
    with pytest.raises(FileNotFoundError, match="nope"):
        plot.plot_rd([_curve("A")], tmp_path / "rd.png", reference_dir=reference_dir, published=("nope",))


def test_plot_needs_something_to_draw(tmp_path, require_module):
    require_module("matplotlib")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot.plot_rd([], tmp_path / "rd.png")


def test_importing_the_evaluation_modules_loads_no_optional_extras():
    code = (
        "import sys, tcmcodec.evaluation.bdrate, tcmcodec.evaluation.results, tcmcodec.evaluation.metrics, tcmcodec.evaluation.anchors, tcmcodec.evaluation.plot\n"
        "heavy = [m for m in ('matplotlib', 'pytorch_msssim', 'imagecodecs', 'pillow_heif', 'scipy', 'torch')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
