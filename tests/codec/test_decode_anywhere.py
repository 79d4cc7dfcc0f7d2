"""Files decode on any machine: deterministic entropy parameters, check values, old files.

The cross-thread tests run encoder and decoder in separate processes with different
``torch.set_num_threads`` (the data-loss bug: float32 entropy parameters made half of the Kodak
files undecodable with another thread count). They use the shipped ``tcm-xs`` weights on full
Kodak images, where the bug showed.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tcmcodec import codec
from tcmcodec.codec import container as bitstream
from tcmcodec.errors import FormatError
from tcmcodec.models import TCM, ModelStreams
from tcmcodec.models.params import CHECK_BYTES, param_net
from tcmcodec.zoo.registry import get_preset

DATA = Path(__file__).parent / "data"

# Worker run in a fresh interpreter: `enc THREADS OUT IMAGE...` writes OUT/<name>.tcm and the encoder's
# reconstruction OUT/<name>.png; `dec THREADS OUT` decodes every .tcm and prints one JSON line per file.
_WORKER = r"""
import json, os, sys, glob
import numpy as np, torch
from PIL import Image
mode, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(threads)
from tcmcodec import codec
c = codec.Codec("tcm-xs")
if mode == "enc":
    for path in sys.argv[4:]:
        name = os.path.splitext(os.path.basename(path))[0]
        data, rec = c.compress_with_reconstruction(path, quality=4)
        open(os.path.join(out, name + ".tcm"), "wb").write(data)
        rec.save(os.path.join(out, name + ".png"))
else:
    for f in sorted(glob.glob(os.path.join(out, "*.tcm"))):
        try:
            img = np.asarray(c.decompress(open(f, "rb").read()), dtype=np.int16)
        except Exception as e:
            print(json.dumps({"file": f, "error": f"{type(e).__name__}: {e}"}))
            continue
        rec = np.asarray(Image.open(f[:-4] + ".png"), dtype=np.int16)
        d = np.abs(img - rec)
        print(json.dumps({"file": f, "differing": int((d > 0).sum()), "max": int(d.max()), "values": int(d.size)}))
"""


def _run(args: list[str], threads: int) -> str:
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", _WORKER, *args], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _cross_thread(tmp_path: Path, images: list[Path], enc_threads: int, dec_threads: int) -> list[dict]:
    out = tmp_path / f"enc{enc_threads}"
    out.mkdir()
    _run(["enc", str(enc_threads), str(out), *map(str, images)], enc_threads)
    rows = [json.loads(line) for line in _run(["dec", str(dec_threads), str(out)], dec_threads).splitlines()]
    assert len(rows) == len(images)
    return rows


def _assert_decoded_within_float_noise(rows: list[dict]) -> None:
    """Every file decodes (same symbols); the float32 synthesis may round a few pixels the other way."""
    print(json.dumps(rows))  # shown with pytest -rA: the numbers behind docs/format.md's statement
    for row in rows:
        assert "error" not in row, row
        assert row["max"] <= 1, row
        assert row["differing"] <= 1e-3 * row["values"], row


@pytest.mark.parametrize("enc_threads, dec_threads", [(1, 2), (2, 1)])
def test_files_decode_with_another_thread_count(kodak_dir, tmp_path, enc_threads, dec_threads):
    # kodim03 and kodim04 were undecodable across thread counts with float32 entropy parameters.
    rows = _cross_thread(tmp_path, [kodak_dir / "kodim03.png", kodak_dir / "kodim04.png"], enc_threads, dec_threads)
    _assert_decoded_within_float_noise(rows)


@pytest.mark.slow
@pytest.mark.parametrize("enc_threads, dec_threads", [(1, 2), (2, 1)])
def test_all_kodak_files_decode_with_another_thread_count(kodak_dir, tmp_path, enc_threads, dec_threads):
    rows = _cross_thread(tmp_path, sorted(kodak_dir.glob("kodim*.png")), enc_threads, dec_threads)
    assert len(rows) == 24
    _assert_decoded_within_float_noise(rows)


@pytest.fixture(scope="module")
def coded_crop(kodak_dir, tcm_xs):
    image = Image.open(kodak_dir / "kodim23.png").convert("RGB").crop((0, 0, 192, 128))
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        return x, tcm_xs.compress(x, 4.0)


def test_version_2_files_carry_one_check_value_per_slice(kodak_dir, tcm_xs):
    image = Image.open(kodak_dir / "kodim23.png").crop((0, 0, 100, 70))
    header, streams = bitstream.unpack(codec.compress(image, tcm_xs, quality=3))
    assert header.version == bitstream.VERSION == 2
    assert len(streams[codec.CHECK_STREAM]) == CHECK_BYTES * tcm_xs.config.num_slices


def test_float64_parameters_decode_to_the_encoders_reconstruction(coded_crop, tcm_xs):
    x, streams = coded_crop
    with torch.inference_mode():
        rec = tcm_xs.compress(x, 4.0, return_x_hat=True).x_hat
        assert torch.equal(tcm_xs.decompress(streams, 4.0), rec)


def test_a_parameter_mismatch_is_a_clear_format_error(coded_crop, tcm_xs):
    # Another machine whose float64 parameter path differs (here: a shifted slice-0 scale) must not
    # decode garbage: the slice's check value stops it before its symbols are read.
    _, streams = coded_crop
    other = TCM(tcm_xs.config)
    other.load_state_dict(tcm_xs.state_dict())
    with torch.no_grad():
        other.cc_scale_transforms[0][-1].bias.add_(3.0)
    with torch.inference_mode(), pytest.raises(FormatError, match="entropy parameters of slice 0 differ"):
        other.decompress(streams, 4.0)


def test_a_check_stream_of_the_wrong_length_is_a_format_error(coded_crop, tcm_xs):
    _, s = coded_crop
    bad = ModelStreams(z=s.z, y=s.y, z_shape=s.z_shape, checks=s.checks[:-1])
    with torch.inference_mode(), pytest.raises(FormatError, match="check stream has"):
        tcm_xs.decompress(bad, 4.0)


def test_a_version_2_file_without_its_check_stream_is_a_format_error(kodak_dir, tcm_xs):
    image = Image.open(kodak_dir / "kodim23.png").crop((0, 0, 64, 64))
    header, streams = bitstream.unpack(codec.compress(image, tcm_xs, quality=3))
    del streams[codec.CHECK_STREAM]
    with pytest.raises(FormatError, match="missing 'check' stream"):
        codec.decompress(bitstream.pack(header, streams), model=tcm_xs)


@pytest.fixture(scope="module")
def tcm_xs_without_haar():
    """The random model the fixture files were written with: seed 0, ``tcm-xs`` as it was before the preset
    gained the Haar shortcuts (training run 9)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TCM(dataclasses.replace(get_preset("tcm-xs").config, haar_shortcuts=False)).eval()
    model.preset_name, model.default_quality = "tcm-xs", get_preset("tcm-xs").default_quality
    return model


@pytest.mark.parametrize("name, version, commit", [
    ("v1_kodim23_96x64_q5", 1, "2c4c132"),  # the float32 code of format version 1
    ("v2_kodim23_96x64_q5", 2, "d10089e"),  # version 2, before the package was reorganised
])
def test_files_written_by_earlier_code_decode_as_before(name, version, commit, tcm_xs_without_haar):
    # Written by the code of `commit` with the suite's random tcm-xs of then (seed 0, so the fixtures do
    # not depend on the shipped weights), 1 thread, with the encoder's reconstruction beside it: decoding
    # here gives the same pixels (the suite runs single-threaded).
    data = (DATA / f"{name}.tcm").read_bytes()
    header, streams = bitstream.unpack(data)
    assert header.version == version and (codec.CHECK_STREAM in streams) == (version >= 2)
    decoded = codec.decompress(data, model=tcm_xs_without_haar)
    expected = Image.open(DATA / f"{name}.png")
    assert decoded.tobytes() == expected.tobytes()


def test_the_float64_parameter_copy_follows_weight_updates(tcm_xs):
    model = TCM(tcm_xs.config)
    model.load_state_dict(tcm_xs.state_dict())
    first = param_net(model, torch.float64)
    assert param_net(model, torch.float64) is first  # cached
    assert next(first.parameters()).dtype == torch.float64
    assert "_param_net_cache" not in " ".join(model.state_dict())
    with torch.no_grad():
        model.h_mean_s[-1][0].bias.add_(1.0)
    second = param_net(model, torch.float64)
    assert second is not first
    assert torch.equal(second.h_mean_s[-1][0].bias, model.h_mean_s[-1][0].bias.double())
    assert param_net(model, torch.float32) is model
