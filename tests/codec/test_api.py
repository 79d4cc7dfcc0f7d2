"""Tests for tcmcodec.codec (image <-> .tcm bytes) and the Pillow plugin.

The model is a randomly initialised tcm-xs (``tcm_xs`` fixture): coding is exact whatever the
weights, so the round trips are checked bit for bit against the encoder-side reconstruction.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tcmcodec import codec
from tcmcodec.codec import container as bitstream
from tcmcodec.errors import FormatError
from tcmcodec.models import TCM, TCMConfig

F32 = struct.Struct("<f")


@pytest.fixture(scope="module")
def kodim23(kodak_dir) -> Image.Image:
    with Image.open(kodak_dir / "kodim23.png") as im:
        return im.convert("RGB")  # 768x512 landscape


@pytest.fixture(scope="module")
def small(kodim23) -> Image.Image:
    """A 40x24 crop with detail (a parrot's head)."""
    return kodim23.crop((300, 100, 340, 124))


@pytest.fixture(scope="module")
def tiny_fixed_rate() -> TCM:
    """A tiny fixed-rate TCM (no preset name): the 'custom' model paths."""
    config = TCMConfig(N=8, M=16, z_channels=8, num_slices=2, max_support_slices=2, depths=(1,) * 6,
                       head_dims=(8,) * 6, hyper_depth=1, hyper_head_dim=8, atten_inter_dim=8,
                       atten_head_dim=8, cc_hidden=(8, 8))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return TCM(config).eval()


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def round_trip(image, model, **kw) -> tuple[bytes, Image.Image, Image.Image]:
    data, rec = codec.compress_with_reconstruction(image, model, **kw)
    out = codec.decompress(data, model=model)
    return data, rec, out


def assert_same_image(a: Image.Image, b: Image.Image) -> None:
    assert a.mode == b.mode and a.size == b.size
    assert np.array_equal(arr(a), arr(b))


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "image_name, box",
    [
        ("kodim23.png", (400, 200, 401, 201)),  # 1x1
        ("kodim23.png", (100, 50, 107, 350)),  # 7 wide x 300 high
        ("kodim23.png", (250, 60, 315, 189)),  # 65 x 129: one pixel past a multiple of 64 each way
        # 511 x 767 from a portrait image (Kodak is 512x768 at most, so 511x769 cannot be cropped)
        ("kodim04.png", (1, 1, 512, 768)),
    ],
    ids=["1x1", "7x300", "65x129", "511x767"],
)
def test_decoded_image_equals_encoder_reconstruction_for_odd_sizes(kodak_dir, tcm_xs, image_name, box):
    with Image.open(kodak_dir / image_name) as im:
        crop = im.convert("RGB").crop(box)
    data, rec, out = round_trip(crop, tcm_xs)
    assert out.size == crop.size == (box[2] - box[0], box[3] - box[1])
    assert out.mode == "RGB"
    assert_same_image(out, rec)
    header = bitstream.read_header(data)
    assert (header.width, header.height) == crop.size
    assert header.z_shape == (-(-crop.height // 64), -(-crop.width // 64))
    assert header.model == "tcm-xs" and header.quality == 4.0 and header.mode == "RGB"


def test_header_records_preset_weights_and_quality(small, tcm_xs):
    from tcmcodec import zoo

    header, streams = bitstream.unpack(codec.compress(small, tcm_xs, 2.5))
    assert header.model == "tcm-xs"
    assert header.weights_id == zoo.weights_id(tcm_xs)
    assert header.quality == 2.5
    assert header.pad_mode == "replicate"
    assert set(streams) == {"z", "y", "check"}


def test_quality_is_rounded_to_float32_before_coding(small, tcm_xs):
    q = 2.3  # not a float32
    q32 = F32.unpack(F32.pack(q))[0]
    assert q32 != q
    data = codec.compress(small, tcm_xs, q)
    assert bitstream.read_header(data).quality == q32
    assert data == codec.compress(small, tcm_xs, q32)  # the model ran with the stored value
    assert_same_image(codec.decompress(data, model=tcm_xs), codec.compress_with_reconstruction(small, tcm_xs, q)[1])


def test_extreme_qualities_decode_exactly(small, tcm_xs):
    for q in (1, 8):  # (a random model's gains are all ones: the rate does not change)
        data, rec, out = round_trip(small, tcm_xs, quality=q)
        assert bitstream.read_header(data).quality == q
        assert_same_image(out, rec)


def test_grayscale_is_restored_as_L(small, tcm_xs):
    gray = small.convert("L")
    data, rec, out = round_trip(gray, tcm_xs)
    assert out.mode == "L" and bitstream.read_header(data).mode == "L"
    assert_same_image(out, rec)


def test_gray_with_alpha_is_restored_as_LA_with_exact_alpha(small, tcm_xs):
    alpha = small.split()[0].point(lambda v: 255 - v)
    la = Image.merge("LA", (small.convert("L"), alpha))
    data, rec, out = round_trip(la, tcm_xs)
    assert out.mode == "LA"
    assert_same_image(out, rec)
    assert np.array_equal(arr(out)[:, :, 1], arr(alpha))


def test_rgba_alpha_is_preserved_exactly(small, tcm_xs):
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, size=(small.height, small.width), dtype=np.uint8)  # noise: no lossy shortcut
    rgba = small.copy()
    rgba.putalpha(Image.fromarray(alpha, "L"))
    data, rec, out = round_trip(rgba, tcm_xs)
    header, streams = bitstream.unpack(data)
    assert header.mode == "RGBA" and codec.ALPHA_STREAM in streams
    assert out.mode == "RGBA"
    assert_same_image(out, rec)
    assert np.array_equal(arr(out)[:, :, 3], alpha)
    # the colour planes are coded as if the alpha were not there
    data_rgb, rec_rgb = codec.compress_with_reconstruction(small, tcm_xs)
    assert np.array_equal(arr(out)[:, :, :3], arr(rec_rgb))
    assert bitstream.unpack(data_rgb)[1]["y"] == streams["y"]


def test_palette_images_decode_as_rgb_or_rgba(small, tcm_xs):
    p = small.quantize(16)
    data, rec, out = round_trip(p, tcm_xs)
    assert out.mode == "RGB"
    assert_same_image(out, rec)
    assert data == codec.compress(p.convert("RGB"), tcm_xs)

    pt = p.copy()
    pt.info["transparency"] = 0
    _, rec_t, out_t = round_trip(pt, tcm_xs)
    assert out_t.mode == "RGBA"
    assert_same_image(out_t, rec_t)
    assert np.array_equal(arr(out_t)[:, :, 3], np.where(arr(p) == 0, 0, 255))


def test_16_bit_images_are_reduced_to_8_bits_with_a_warning(small, tcm_xs):
    gray8 = arr(small.convert("L")).astype(np.uint16)
    img16 = Image.fromarray(gray8 * 257)  # exact 8 -> 16 bit scaling: reduces back losslessly
    assert img16.mode.startswith("I")
    with pytest.warns(UserWarning, match="8 bits"):
        data, rec, out = round_trip(img16, tcm_xs)
    assert out.mode == "L"
    assert_same_image(out, rec)
    assert data == codec.compress(small.convert("L"), tcm_xs)
    with pytest.warns(UserWarning, match="8 bits"):
        assert codec.compress(gray8 * 257, tcm_xs) == data  # uint16 numpy array too


def test_16_bit_png_file_is_read_with_a_warning(small, tcm_xs, tmp_path):
    gray8 = arr(small.convert("L")).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray8 * 257).save(path)
    with pytest.warns(UserWarning, match="8 bits"):
        data = codec.compress(path, tcm_xs)
    assert data == codec.compress(small.convert("L"), tcm_xs)


def _png_rgb16(path, rgb16: np.ndarray) -> None:
    """A 48-bit RGB PNG (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_16_bit_rgb_png_file_is_reduced_with_a_warning(small, tcm_xs, tmp_path):
    path = tmp_path / "rgb16.png"
    _png_rgb16(path, arr(small).astype(np.uint16) * 257)
    with pytest.warns(UserWarning, match="16-bit RGB image reduced to 8 bits"):
        data = codec.compress(path, tcm_xs)
    assert data == codec.compress(small, tcm_xs)


def test_animated_images_code_their_first_frame_with_a_warning(small, tcm_xs, tmp_path):
    path = tmp_path / "anim.gif"
    frames = [small.convert("P"), small.rotate(180).convert("P")]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="only the first of its 2 frames"):
        data = codec.compress(path, tcm_xs)
    with Image.open(path) as im:
        assert data == codec.compress(im.convert("RGB"), tcm_xs)


def test_an_image_too_large_for_the_memory_is_a_resource_error_before_any_network_runs(small, tcm_xs, monkeypatch):
    from tcmcodec import ResourceError
    from tcmcodec.codec import memory

    data = codec.compress(small, tcm_xs)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 1 << 20)
    monkeypatch.setattr(type(tcm_xs), "compress", lambda *a, **k: pytest.fail("a network ran"))
    monkeypatch.setattr(type(tcm_xs), "decompress", lambda *a, **k: pytest.fail("a network ran"))
    w, h = small.size
    with pytest.raises(ResourceError, match=rf"a {w}x{h} image needs about .* GiB to encode .* 0\.0 GiB are available"):
        codec.compress(small, tcm_xs)
    with pytest.raises(ResourceError, match="to decode"):
        codec.decompress(data, model=tcm_xs)
    monkeypatch.setenv("TCMCODEC_IGNORE_MEMORY", "1")
    with pytest.raises(pytest.fail.Exception, match="a network ran"):
        codec.decompress(data, model=tcm_xs)


def test_the_memory_estimate_grows_with_pixels_and_width(tcm_xs):
    from tcmcodec.codec.memory import estimate_bytes
    from tcmcodec.models import TCMConfig

    base, small, large = (estimate_bytes(tcm_xs, h, w) for h, w in ((64, 64), (512, 768), (2160, 3840)))
    assert large - base > 20 * (small - base)  # ~linear in the padded pixels (21x as many)
    assert 3 << 30 < large < 5 << 30  # measured: 3.0 GiB to encode 3840x2160 untiled with tcm-xs
    wider = type(tcm_xs)(TCMConfig(N=64))
    assert estimate_bytes(wider, 512, 768) > small


def test_the_tiled_estimate_covers_the_measured_peaks(tcm_xs):
    # benchmarks/README.md: tcm-xs peaked at 1.07 GiB (3840x2160) and 2.14 GiB (7680x4320; 1.90 GiB with the
    # hyper-synthesis in bands) in its default tiles; tcm-s (M = 320: a larger whole-latent entropy state)
    # at 1.94 and 3.60 GiB (3.21 GiB).
    from tcmcodec.codec import memory, tiles
    from tcmcodec.zoo import get_preset

    def estimate(model, h, w):
        return memory.estimate_bytes(model, h, w, tiles.tiling_for((-(-h // 64), -(-w // 64)), None, model))

    tcm_s = type(tcm_xs)(get_preset("tcm-s").config)
    for model, peaks in ((tcm_xs, (1.07, 2.14)), (tcm_s, (1.94, 3.60))):
        for (h, w), peak in zip(((2160, 3840), (4320, 7680)), peaks):
            assert peak * (1 << 30) < estimate(model, h, w) < 1.6 * peak * (1 << 30)


def test_the_image_and_the_whole_latent_are_freed_before_the_entropy_coding(small, tcm_xs, monkeypatch):
    # 100 MB of pixels and 83 MB of y at 7680x4320 (tcm-xs): once g_a has run, nothing of the encoder holds
    # the padded pixels, and the latent is held slice by slice (each freed once coded).
    import weakref

    from tcmcodec.codec import api

    watched, alive = [], []

    def pad_spy(*args):
        out = np.array(api_pad(*args))  # a fresh array the test can watch
        watched.append(weakref.ref(out))
        return out

    def analysis_spy(self, *args, **kwargs):
        y, z = analysis(self, *args, **kwargs)
        watched.append(weakref.ref(y))
        return y, z

    def params_spy(self, *args, **kwargs):
        alive.append([ref() is not None for ref in watched])
        return slice_params(self, *args, **kwargs)

    api_pad, analysis, slice_params = api.pad_image, TCM._analysis, TCM._slice_params
    monkeypatch.setattr(api, "pad_image", pad_spy)
    monkeypatch.setattr(TCM, "_analysis", analysis_spy)
    monkeypatch.setattr(TCM, "_slice_params", params_spy)
    data = codec.compress(small, tcm_xs, quality=3.0)
    assert alive == [[False, False]] * tcm_xs.config.num_slices
    monkeypatch.undo()
    assert data == codec.compress(small, tcm_xs, quality=3.0)


def test_each_slice_frees_its_whole_latent_tensors_before_the_next_slice_and_the_synthesis(small, tcm_xs, monkeypatch):
    # A slice's means, scales, table indexes, LRP input, symbols and values before LRP are whole-latent
    # (~210 MB for tcm-xs at 7680x4320): none is alive when the next slice's parameters or g_s run, in
    # the encoder (with its reconstruction) and in the decoder.
    import weakref

    from tcmcodec.entropy.gaussian import GaussianConditional

    watched, alive = [], []

    def spy(method, check=False):
        def wrapped(self, *args, **kwargs):
            if check:
                alive.append(sum(ref() is not None for ref in watched))
                watched.clear()
            out = method(self, *args, **kwargs)
            watched.extend(weakref.ref(t) for t in (out if isinstance(out, tuple) else (out,)) if t is not None)
            return out
        return wrapped

    for name in ("compress", "decompress", "build_indexes"):
        monkeypatch.setattr(GaussianConditional, name, spy(getattr(GaussianConditional, name)))
    monkeypatch.setattr(TCM, "_slice_params", spy(TCM._slice_params, check=True))
    monkeypatch.setattr(TCM, "_reconstruct", spy(TCM._reconstruct, check=True))
    data, _ = codec.compress_with_reconstruction(small, tcm_xs, quality=3.0)
    codec.decompress(data, model=tcm_xs)
    assert alive == [0] * (2 * (tcm_xs.config.num_slices + 1))


def test_exif_orientation_is_applied(small, tcm_xs, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.png"
    small.save(path, exif=exif)
    upright = small.transpose(Image.Transpose.ROTATE_270)
    data, rec, out = round_trip(path, tcm_xs)
    assert out.size == (small.height, small.width)
    assert_same_image(out, rec)
    assert data == codec.compress(upright, tcm_xs)
    with Image.open(path) as opened:  # a PIL image carrying the tag: same
        assert codec.compress(opened, tcm_xs) == data


def test_numpy_arrays_code_like_the_equivalent_pil_images(small, tcm_xs):
    rgb = arr(small)
    assert codec.compress(rgb, tcm_xs) == codec.compress(small, tcm_xs)
    gray = arr(small.convert("L"))
    assert codec.compress(gray, tcm_xs) == codec.compress(small.convert("L"), tcm_xs)
    rgba = np.dstack([rgb, np.full(gray.shape, 7, np.uint8)])
    data = codec.compress(rgba, tcm_xs)
    out = codec.decompress(data, model=tcm_xs)
    assert out.mode == "RGBA" and (arr(out)[:, :, 3] == 7).all()
    # non-contiguous views are fine
    mirrored = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert codec.compress(rgb[:, ::-1], tcm_xs) == codec.compress(mirrored, tcm_xs)


def test_zero_padding_is_recorded_and_decodes_exactly(small, tcm_xs):
    data, rec, out = round_trip(small, tcm_xs, pad_mode="zero")
    assert bitstream.read_header(data).pad_mode == "zero"
    assert_same_image(out, rec)
    assert data != codec.compress(small, tcm_xs)


def test_codec_class_reuses_one_model(small, tcm_xs):
    c = codec.Codec(tcm_xs)
    assert c.model is tcm_xs and c.name == "tcm-xs"
    data, rec = c.compress_with_reconstruction(small, 3)
    assert data == codec.compress(small, tcm_xs, 3) == c.compress(small, 3)
    assert_same_image(c.decompress(data), rec)


def test_checkpoint_models_code_like_the_same_weights_in_memory(small, tcm_xs, tcm_xs_checkpoint):
    data = codec.compress(small, "tcm-xs", checkpoint=tcm_xs_checkpoint)
    assert data == codec.compress(small, tcm_xs)
    assert codec.compress(small, None, checkpoint=tcm_xs_checkpoint) == data  # architecture from the file
    out = codec.decompress(data, checkpoint=tcm_xs_checkpoint)  # preset from the header
    assert_same_image(out, codec.decompress(data, model=tcm_xs))
    assert codec.Codec(checkpoint=tcm_xs_checkpoint).decompress(data).tobytes() == out.tobytes()


def test_fixed_rate_custom_model(small, tiny_fixed_rate):
    data, rec, out = round_trip(small, tiny_fixed_rate)
    header = bitstream.read_header(data)
    assert header.model == codec.CUSTOM_MODEL_NAME and header.quality == 0.0
    assert_same_image(out, rec)
    with pytest.raises(ValueError, match="fixed-rate"):
        codec.compress(small, tiny_fixed_rate, 3)
    with pytest.raises(FormatError, match="unknown model 'custom'"):
        codec.decompress(data)


def test_weights_id_follows_in_place_weight_updates(small):
    config = TCMConfig(N=8, M=16, z_channels=8, num_slices=2, max_support_slices=2, depths=(1,) * 6,
                       head_dims=(8,) * 6, hyper_depth=1, hyper_head_dim=8, atten_inter_dim=8,
                       atten_head_dim=8, cc_hidden=(8, 8))
    model = TCM(config).eval()
    before = codec.compress(small, model)
    with torch.no_grad():
        next(model.g_s.parameters()).add_(0.01)
    after = codec.compress(small, model)
    assert bitstream.read_header(before).weights_id != bitstream.read_header(after).weights_id
    with pytest.raises(FormatError, match="different weights"):
        codec.decompress(before, model=model)
    codec.decompress(after, model=model)


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (65536, 1)])
def test_images_must_have_1_to_65535_pixels_per_side(tcm_xs, size):
    with pytest.raises(ValueError, match="1..65535"):
        codec.compress(Image.new("L", size), tcm_xs)


def test_an_oversized_image_file_is_rejected_before_its_pixels_are_decoded(tcm_xs, tmp_path):
    buf = io.BytesIO()
    Image.new("L", (65536, 1)).save(buf, format="PNG")
    data = buf.getvalue()
    path = tmp_path / "wide.png"
    path.write_bytes(data[: data.find(b"IDAT") + 4])  # header intact, pixels cut: decoding them is an OSError
    with pytest.raises(ValueError, match="1..65535"):
        codec.compress(path, tcm_xs)


@pytest.mark.parametrize("warning_as_error", [False, True])
def test_decompression_bombs_are_value_errors(tcm_xs, tmp_path, monkeypatch, warning_as_error):
    path = tmp_path / "bomb.png"
    Image.new("L", (64, 40)).save(path)  # 2560 pixels
    # Pillow raises DecompressionBombError above 2 * MAX_IMAGE_PIXELS, else warns above MAX_IMAGE_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000 if warning_as_error else 1000)
    with warnings.catch_warnings():
        if warning_as_error:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ValueError, match="bomb.png: .*decompression bomb") as info:
            codec.compress(path, tcm_xs)
    assert "\n" not in str(info.value)


def test_bad_arrays_are_rejected(tcm_xs):
    with pytest.raises(ValueError, match="uint8"):
        codec.compress(np.zeros((8, 8, 3), np.float32), tcm_xs)
    with pytest.raises(ValueError, match="shape"):
        codec.compress(np.zeros((8, 8, 5), np.uint8), tcm_xs)
    with pytest.raises(ValueError, match="1..65535"):
        codec.compress(np.zeros((0, 8), np.uint8), tcm_xs)
    with pytest.raises(TypeError):
        codec.compress(12, tcm_xs)


@pytest.mark.parametrize("quality", [0.5, 8.5, float("nan"), float("inf")])
def test_quality_must_be_in_the_models_range(small, tcm_xs, quality):
    with pytest.raises(ValueError, match=r"quality must be in \[1, 8\]"):
        codec.compress(small, tcm_xs, quality)


def test_bad_model_arguments(small, tcm_xs, tcm_xs_checkpoint):
    with pytest.raises(ValueError, match="unknown model 'tcm-xxl'"):
        codec.compress(small, "tcm-xxl")
    with pytest.raises(ValueError, match="pad_mode"):
        codec.compress(small, tcm_xs, pad_mode="reflect")
    with pytest.raises(ValueError, match="not both"):
        codec.compress(small, tcm_xs, checkpoint=tcm_xs_checkpoint)
    with pytest.raises(ValueError, match="architecture"):
        codec.compress(small, "tcm-s", checkpoint=tcm_xs_checkpoint)


def test_missing_image_file_is_an_os_error(tcm_xs, tmp_path):
    with pytest.raises(FileNotFoundError):
        codec.compress(tmp_path / "nope.png", tcm_xs)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(OSError):
        codec.compress(tmp_path / "text.png", tcm_xs)


@pytest.fixture(scope="module")
def coded(small, tcm_xs) -> bytes:
    return codec.compress(small, tcm_xs)


def test_decoding_with_other_weights_is_a_format_error(coded, tiny_fixed_rate):
    with pytest.raises(FormatError, match="different weights"):
        codec.decompress(coded, model=tiny_fixed_rate)


@pytest.mark.parametrize("cut", [0, 3, 20, -1])
def test_truncated_files_are_format_errors(coded, tcm_xs, cut):
    with pytest.raises(FormatError):
        codec.decompress(coded[:cut], model=tcm_xs)


def test_every_flipped_payload_byte_is_a_format_error(coded, tcm_xs):
    for pos in range(0, len(coded), max(1, len(coded) // 40)):
        bad = bytearray(coded)
        bad[pos] ^= 0x5A
        with pytest.raises(FormatError):
            codec.decompress(bytes(bad), model=tcm_xs)


def test_corrupt_stream_inside_a_valid_container_is_a_format_error(coded, tcm_xs):
    header, streams = bitstream.unpack(coded)
    for name in ("z", "y"):
        for mutate in (lambda b: b[: len(b) // 2], lambda b: b[:4] + bytes([b[4] ^ 1]) + b[5:], lambda b: b""):
            bad = dict(streams)
            bad[name] = mutate(streams[name])
            with pytest.raises(FormatError):
                codec.decompress(bitstream.pack(header, bad), model=tcm_xs)


def test_bad_alpha_streams_are_format_errors(small, tcm_xs):
    rgba = small.convert("RGBA")
    header, streams = bitstream.unpack(codec.compress(rgba, tcm_xs))
    missing = {k: v for k, v in streams.items() if k != codec.ALPHA_STREAM}
    with pytest.raises(FormatError, match="missing 'alpha' stream"):
        codec.decompress(bitstream.pack(header, missing), model=tcm_xs)
    buf = io.BytesIO()
    Image.new("L", (small.width + 1, small.height)).save(buf, "PNG")
    for alpha in (b"garbage", buf.getvalue()):
        with pytest.raises(FormatError, match="alpha stream"):
            codec.decompress(bitstream.pack(header, {**streams, "alpha": alpha}), model=tcm_xs)


def test_pixel_budget_is_enforced_before_decoding(coded, tcm_xs):
    with pytest.raises(FormatError, match="pixel budget"):
        codec.decompress(coded, model=tcm_xs, max_pixels=100)


# ------------------------------------------------------------------------------------ Pillow plugin


def test_pillow_opens_and_saves_tcm_files(small, tcm_xs, tmp_path):
    from tcmcodec.codec import pil_plugin

    path = tmp_path / "photo.tcm"
    expected = codec.compress_with_reconstruction(small, tcm_xs)[1]
    pil_plugin.register(model=tcm_xs)
    try:
        small.save(path, model=tcm_xs)  # format from the extension
        assert path.read_bytes() == codec.compress(small, tcm_xs)
        with Image.open(path) as im:
            assert im.format == "TCM" and im.size == small.size and im.mode == "RGB"
            assert im.info["tcm_model"] == "tcm-xs"
            im.load()
            assert_same_image(im, expected)
        with Image.open(io.BytesIO(path.read_bytes())) as im:  # file objects too
            assert np.array_equal(arr(im), arr(expected))
    finally:
        pil_plugin.register()  # back to the defaults


def test_pillow_does_not_identify_broken_headers(coded, tmp_path):
    import tcmcodec.codec.pil_plugin  # noqa: F401 - registers

    path = tmp_path / "bad.tcm"
    path.write_bytes(coded[:4] + b"\x09" + coded[5:])  # unsupported version
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(path)


def test_a_fuzzed_sample_of_mutated_files_only_ever_raises_format_or_resource_errors():
    # benchmarks/fuzz_decoder.py runs >= 10,000 inputs; this is a fast sample of every mutation kind.
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_decoder.py"
    spec = importlib.util.spec_from_file_location("fuzz_decoder", path)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    result = fuzz.run(140, seed=3, timeout=60.0)
    assert result["counts"]["other_exception"] == 0, result["failures"]
    assert result["counts"]["hang"] == 0
    assert result["counts"]["format_error"] > 100


def test_a_file_of_a_preset_without_shipped_weights_is_a_format_error_naming_the_model(small, tcm_xs):
    header, streams = bitstream.unpack(codec.compress(small, tcm_xs))
    kw = dict(model="tcm-m", weights_id=header.weights_id, quality=0.0, height=header.height, width=header.width)
    data = bitstream.pack(bitstream.Header(**kw), streams)
    with pytest.raises(FormatError, match="coded with tcm-m, whose weights are not shipped.*--checkpoint"):
        codec.decompress(data)
    # tcm-s: the published checkpoint of the header's quality; quality 0 means none of them
    data = bitstream.pack(bitstream.Header(**{**kw, "model": "tcm-s"}), streams)
    with pytest.raises(FormatError, match="coded with a tcm-s checkpoint that is not one of the published ones"):
        codec.decompress(data)
    data = bitstream.pack(bitstream.Header(**{**kw, "model": "tcm-s", "quality": 7.0}), streams)
    with pytest.raises(FormatError, match="quality 7 in the header: tcm-s has published checkpoints at quality 1"):
        codec.decompress(data)
