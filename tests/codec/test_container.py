"""Tests for the .tcm container (tcmcodec.codec.container)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import pytest

from tcmcodec.codec.container import (
    DEFAULT_MAX_PIXELS,
    MAGIC,
    MAX_DIMENSION,
    MODES,
    PAD_MODES,
    QUALITY_MAX,
    VERSION,
    Header,
    pack,
    read_header,
    sniff,
    unpack,
    weights_digest,
)
from tcmcodec.errors import FormatError


def make_header(**kw) -> Header:
    args = dict(model="tcm-xs", weights_id=bytes(8), quality=2.5, height=100, width=150)
    args.update(kw)
    return Header(**args)


SMALL_STREAMS = {"z": b"\xaa\xbb\xcc", "y": b"\x01\x02\x03\x04\x05"}


def small_file(**kw) -> bytes:
    return pack(make_header(**kw), SMALL_STREAMS)


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def raw_file(
    *,
    magic=MAGIC,
    version=VERSION,
    flags=0x01,
    model=b"tcm-xs",
    weights=b"",
    quality=2.5,
    height=100,
    width=150,
    z_shape=None,
    streams=(("z", b"\xaa"), ("y", b"\xbb")),
    count=None,
) -> bytes:
    """Hand-built file with a valid CRC, to reach checks that pack() refuses to produce."""
    if z_shape is None:
        z_shape = (max(1, -(-height // 64)), max(1, -(-width // 64)))
    out = bytearray(magic) + bytes((version, flags, len(model))) + model + weights
    out += struct.pack("<f", quality)
    for v in (height, width, *z_shape):
        out += varint(v)
    out.append(len(streams) if count is None else count)
    for name, blob in streams:
        out += bytes((len(name),)) + name.encode() + varint(len(blob))
    for _, blob in streams:
        out += blob
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def assert_format_error(data: bytes, match: str, **kw) -> FormatError:
    with pytest.raises(FormatError, match=match) as info:
        unpack(data, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg
    return info.value


# ------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_round_trip_preserves_header_and_streams(mode, pad_mode):
    header = make_header(
        weights_id=weights_digest(b"weights"), quality=3.3, height=517, width=1, mode=mode,
        pad_mode=pad_mode,
    )
    streams = {"z": bytes(range(7)), "y": bytes(300), "alpha": b"\x78\x9c" * 10}
    h2, s2 = unpack(pack(header, streams))
    assert h2 == header
    assert s2 == streams
    assert list(s2) == ["z", "y", "alpha"]


def test_round_trip_keeps_stream_order_and_empty_streams():
    streams = {"y": b"", "extra_1": b"\x00" * 200, "z": b""}
    _, s2 = unpack(pack(make_header(), streams))
    assert list(s2.items()) == list(streams.items())


def test_fixed_rate_model_without_weights_id_round_trips():
    header = make_header(model="tcm-large_v1.2", quality=0.0, weights_id=None)
    assert header.weights_id == bytes(8) and not header.has_weights_id
    assert unpack(pack(header, SMALL_STREAMS))[0] == header


def test_extreme_dimensions_round_trip():
    for h, w in [(1, 1), (MAX_DIMENSION, 1), (64, 65), (MAX_DIMENSION, MAX_DIMENSION)]:
        header = make_header(height=h, width=w)
        assert unpack(pack(header, SMALL_STREAMS), max_pixels=None)[0] == header


def test_quality_is_canonicalized_to_float32():
    header = make_header(quality=3.3)
    assert header.quality != 3.3 and abs(header.quality - 3.3) < 1e-6
    assert make_header(quality=header.quality) == header
    assert unpack(pack(header, SMALL_STREAMS))[0].quality == header.quality


def test_z_shape_is_derived_when_omitted_and_accepts_128_padding():
    assert make_header(height=100, width=150).z_shape == (2, 3)
    assert make_header(height=128, width=129).z_shape == (2, 3)
    assert make_header(height=100, width=150).padded_size == (128, 192)
    # padding to a multiple of 128 (as the official TCM evaluation does) is also representable
    header = make_header(height=100, width=150, z_shape=(2, 4))
    assert unpack(pack(header, SMALL_STREAMS))[0].z_shape == (2, 4)


def test_typical_overhead_is_small():
    streams = {"z": bytes(100), "y": bytes(3000)}
    preset = pack(make_header(height=512, width=768, quality=3.0), streams)
    assert len(preset) - 3100 <= 36
    hashed = pack(make_header(height=512, width=768, weights_id=weights_digest(b"w")), streams)
    assert len(hashed) - 3100 <= 44


def test_read_header_reads_only_the_header():
    data = small_file(mode="LA")
    header = read_header(data)
    assert header == unpack(data)[0]
    # works on a prefix (this header is 22 bytes) and does not check the CRC or the stream table
    assert read_header(data[:22]) == header
    with pytest.raises(FormatError, match="truncated"):
        read_header(data[:21])
    corrupt = data[:-1] + bytes([data[-1] ^ 0xFF])
    assert read_header(corrupt) == header


def test_read_header_applies_model_and_budget_checks_when_asked():
    data = small_file()
    with pytest.raises(FormatError, match="unknown model"):
        read_header(data, known_models={"tcm-s"})
    with pytest.raises(FormatError, match="pixel budget"):
        read_header(data, max_pixels=100)


def test_sniff_recognizes_the_magic():
    data = small_file()
    assert sniff(data) and sniff(data[:16]) and sniff(MAGIC)
    assert not sniff(b"\x89PNG\r\n\x1a\n") and not sniff(b"") and not sniff(MAGIC[:3])


def test_unpack_accepts_bytearray_and_memoryview():
    data = small_file()
    assert unpack(bytearray(data)) == unpack(data) == unpack(memoryview(data))


def test_module_does_not_import_torch():
    code = "import sys, tcmcodec.codec.container; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------ corrupt inputs


def test_wrong_magic_raises_format_error():
    data = small_file()
    assert_format_error(b"\x89PNG" + data[4:], "bad magic bytes")
    assert_format_error(b"GIF89a" + bytes(40), "not a .tcm file")
    assert_format_error(b"x", "bad magic")


def test_empty_input_raises_format_error():
    assert_format_error(b"", "truncated")


def test_unknown_version_raises_format_error():
    data = small_file()
    for version in (0, 4, 255):
        assert_format_error(raw_file(version=version), f"unsupported format version {version}")
        assert_format_error(data[:4] + bytes([version]) + data[5:], "unsupported format version")


def test_unknown_model_raises_format_error():
    data = small_file()
    err = assert_format_error(data, "unknown model 'tcm-xs'", known_models=["tcm-s", "tcm-m"])
    assert "tcm-m, tcm-s" in str(err)
    assert unpack(data, known_models={"tcm-xs"})[0].model == "tcm-xs"
    assert unpack(data, known_models=None)[0].model == "tcm-xs"


def test_invalid_model_name_raises_format_error():
    assert_format_error(raw_file(model=b""), "bad model name length 0")
    assert_format_error(raw_file(model=b"a" * 33), "bad model name length 33")
    assert_format_error(raw_file(model=b"tcm xs"), "bad model name")
    assert_format_error(raw_file(model=b"tcm\xffxs"), "bad model name")


def test_truncated_file_raises_format_error_at_every_prefix():
    for data in (small_file(), pack(make_header(weights_id=weights_digest(b"w"), mode="RGBA"),
                                    {**SMALL_STREAMS, "alpha": b"\x78\x9c"})):
        for n in range(len(data)):
            with pytest.raises(FormatError, match="truncated|bad magic") as info:
                unpack(data[:n])
            assert "\n" not in str(info.value)


def test_truncated_header_is_reported_with_the_field():
    data = small_file()
    assert_format_error(data[:5], "truncated file: ends inside the flags byte")
    assert_format_error(data[:10], "ends inside the model name")


def test_crc_mismatch_raises_format_error():
    data = small_file()
    payload_byte = len(data) - 6
    flipped = data[:payload_byte] + bytes([data[payload_byte] ^ 0x01]) + data[payload_byte + 1 :]
    assert_format_error(flipped, "CRC mismatch")
    bad_crc = data[:-4] + bytes(4)
    assert_format_error(bad_crc, "CRC mismatch")


def test_every_single_flipped_byte_raises_format_error():
    data = pack(make_header(weights_id=weights_digest(b"w"), mode="LA"),
                {**SMALL_STREAMS, "alpha": b"\x78\x9c\x01"})
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            corrupt = data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]
            with pytest.raises(FormatError) as info:
                unpack(corrupt)
            assert "\n" not in str(info.value), (i, mask)


def test_absurd_dimensions_raise_format_error_before_crc():
    for h, w in [(MAX_DIMENSION + 1, 10), (10, 1 << 16), (1 << 20, 1 << 20), ((1 << 32) - 1, 1)]:
        data = raw_file(height=h, width=w, z_shape=(1, 1))
        assert_format_error(data, "absurd image size", max_pixels=None)
        # the size check comes before the CRC: a bad CRC does not change the reason
        assert_format_error(data[:-4] + bytes(4), "absurd image size", max_pixels=None)


def test_zero_dimension_raises_format_error():
    assert_format_error(raw_file(height=0, width=10), "zero dimension")
    assert_format_error(raw_file(height=10, width=0), "zero dimension")


def test_pixel_budget_exceeded_raises_format_error():
    data = small_file(height=1000, width=1000)
    assert_format_error(data, "exceeds the pixel budget of 999999", max_pixels=999_999)
    assert unpack(data, max_pixels=1_000_000)[0].height == 1000
    big = small_file(height=20000, width=20000)
    assert_format_error(big, "pixel budget")  # DEFAULT_MAX_PIXELS
    assert unpack(big, max_pixels=None)[0].width == 20000
    assert 20000 * 20000 > DEFAULT_MAX_PIXELS


def test_inconsistent_z_shape_raises_format_error():
    assert_format_error(raw_file(height=100, width=150, z_shape=(1, 3)), "z_shape 1x3 inconsistent")
    assert_format_error(raw_file(height=100, width=150, z_shape=(2, 900)), "inconsistent")
    assert_format_error(raw_file(height=100, width=150, z_shape=(0, 3)), "inconsistent")


def test_unknown_mode_raises_format_error():
    for code in range(len(MODES), 8):
        assert_format_error(raw_file(flags=code), f"unknown image mode code {code}")


def test_reserved_flag_bits_raise_format_error():
    assert_format_error(raw_file(flags=0x21), "reserved bits")
    assert_format_error(raw_file(flags=0x81), "reserved bits")


def test_quality_out_of_range_raises_format_error():
    for q in (-1.0, QUALITY_MAX * 2, float("nan"), float("inf")):
        assert_format_error(raw_file(quality=q), "quality .* out of range")


def test_trailing_garbage_raises_format_error():
    data = small_file()
    assert_format_error(data + b"\x00", "trailing garbage: 1 unexpected bytes")
    assert_format_error(data + data, "trailing garbage")


def test_stream_lengths_exceeding_the_file_raise_format_error():
    data = raw_file(streams=(("z", b"\xaa"), ("y", b"\xbb")))
    # hand-patch y's length varint (1 -> 100); CRC is not reached
    i = data.index(b"\x01y\x01") + 2
    patched = data[:i] + b"\x64" + data[i + 1 :]
    assert_format_error(patched, "truncated file: .* stream table needs")
    huge = raw_file(streams=(("z", b"\xaa"), ("y", b"\xbb")))
    j = huge.index(b"\x01y\x01") + 2
    huge = huge[:j] + b"\xff\xff\xff\xff\x0f" + huge[j + 1 :]
    assert_format_error(huge, "truncated file")


def test_bad_stream_tables_raise_format_error():
    assert_format_error(raw_file(streams=(("z", b"a"),)), "bad stream count 1")
    assert_format_error(raw_file(streams=(("z", b"a"), ("q", b"b"))), "missing required stream 'y'")
    assert_format_error(raw_file(streams=(("z", b"a"), ("z", b"b"))), "duplicate stream 'z'")
    assert_format_error(raw_file(streams=(("z", b"a"), ("y", b"b"), ("a b", b""))), "bad stream 2 name")
    assert_format_error(raw_file(streams=(("z", b"a"), ("y", b"b")), count=17), "bad stream count 17")


def test_non_minimal_varint_raises_format_error():
    data = raw_file()
    i = data.index(b"\x64\x96\x01")  # height 100, width 150
    patched = data[:i] + b"\xe4\x00" + data[i + 1 :]
    assert_format_error(patched, "non-minimal varint")
    overlong = data[:i] + b"\x80\x80\x80\x80\x80\x01" + data[i + 1 :]
    assert_format_error(overlong, "longer than 5 bytes")


# ------------------------------------------------------------------------ encode-side validation


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(model=""), "model"),
        (dict(model="x" * 33), "model"),
        (dict(model="tcm xs"), "model"),
        (dict(model="tcm-é"), "model"),
        (dict(weights_id=b"short"), "weights_id"),
        (dict(quality=-0.5), "quality"),
        (dict(quality=QUALITY_MAX + 1), "quality"),
        (dict(quality=float("nan")), "quality"),
        (dict(height=0), "height"),
        (dict(width=MAX_DIMENSION + 1), "width"),
        (dict(mode="CMYK"), "mode"),
        (dict(mode="P"), "mode"),
        (dict(pad_mode="reflect"), "pad_mode"),
        (dict(z_shape=(1, 3)), "z_shape"),
        (dict(z_shape=(2,)), "z_shape"),
        (dict(z_shape=(2.0, 3)), "z_shape"),
    ],
)
def test_header_rejects_bad_arguments_with_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        make_header(**kw)


@pytest.mark.parametrize(
    "kw", [dict(height=1.5), dict(height=True), dict(quality="3"), dict(weights_id="00000000")]
)
def test_header_rejects_wrong_types_with_type_error(kw):
    with pytest.raises(TypeError):
        make_header(**kw)


def test_header_is_frozen():
    header = make_header()
    with pytest.raises(AttributeError):
        header.height = 5  # type: ignore[misc]


def test_pack_rejects_bad_streams():
    header = make_header()
    with pytest.raises(ValueError, match="missing required stream 'y'"):
        pack(header, {"z": b""})
    with pytest.raises(ValueError, match="stream name"):
        pack(header, {**SMALL_STREAMS, "bad name": b""})
    with pytest.raises(ValueError, match="stream name"):
        pack(header, {**SMALL_STREAMS, "x" * 17: b""})
    with pytest.raises(TypeError):
        pack(header, {"z": b"", "y": "text"})
    with pytest.raises(ValueError, match="at most 16 streams"):
        pack(header, {**SMALL_STREAMS, **{f"s{i}": b"" for i in range(15)}})
    with pytest.raises(TypeError):
        pack("header", SMALL_STREAMS)  # type: ignore[arg-type]


def test_unpack_rejects_bad_max_pixels_argument():
    with pytest.raises(ValueError):
        unpack(small_file(), max_pixels=0)
