"""The ``.tcm`` container: header, named coded streams and a CRC-32 (see ``docs/format.md``).

Pure Python (``struct`` + ``zlib``), no torch: ``tcm info`` and the PIL plugin use it cheaply.

Encoder side::

    header = Header(model="tcm-xs", weights_id=weights_digest(blob), quality=3.0,
                    height=h, width=w, mode="RGB", pad_mode="replicate", z_shape=(zh, zw))
    data = pack(header, {"z": z_bytes, "y": y_bytes})

Decoder side::

    header, streams = unpack(data, known_models=list_models())

:func:`unpack` validates the whole file (magic, version, every header field, the stream table
against the file size, the CRC-32) before returning anything; every problem is a
:class:`tcmcodec.errors.FormatError` with a one-line reason. Invalid arguments on the encode side
(:class:`Header`, :func:`pack`) raise a plain :class:`ValueError`/:class:`TypeError`.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Collection, Mapping

from tcmcodec import _varint
from tcmcodec.errors import FormatError

__all__ = [
    "MAGIC",
    "VERSION",
    "TILED_VERSION",
    "VERSIONS",
    "MODES",
    "PAD_MODES",
    "MAX_DIMENSION",
    "DEFAULT_MAX_PIXELS",
    "QUALITY_MAX",
    "PAD_UNIT",
    "MAX_PAD_SLACK",
    "REQUIRED_STREAMS",
    "Header",
    "pack",
    "unpack",
    "read_header",
    "sniff",
    "weights_digest",
]

from .header import (  # noqa: F401 - the container's constants and Header are part of its API
    _F32,
    _MODEL_RE,
    _NO_WEIGHTS_ID,
    DEFAULT_MAX_PIXELS,
    MAGIC,
    MAX_DIMENSION,
    MAX_MODEL_NAME,
    MAX_PAD_SLACK,
    MODES,
    PAD_MODES,
    PAD_UNIT,
    QUALITY_MAX,
    REQUIRED_STREAMS,
    TILED_VERSION,
    VERSION,
    VERSIONS,
    WEIGHTS_ID_SIZE,
    Header,
    _padded_ok,
    weights_digest,
)

#: Stream names: 1..MAX_STREAM_NAME characters of [A-Za-z0-9_]; at most MAX_STREAMS streams per file.
MAX_STREAM_NAME = 16
MAX_STREAMS = 16
# Flags byte: bits 0-2 mode code, bit 3 pad mode, bit 4 weights_id present, bits 5-7 reserved (0).
_MODE_MASK = 0x07
_PAD_SHIFT = 3
_FLAG_WEIGHTS = 0x10
_RESERVED_MASK = 0xE0
_VARINT_MAX_BYTES = 5  # values < 2**35; we further cap at 2**32 - 1
_VARINT_MAX = (1 << 32) - 1
_CRC_SIZE = 4
_STREAM_RE = re.compile(r"[A-Za-z0-9_]{1,%d}\Z" % MAX_STREAM_NAME)



# --------------------------------------------------------------------------------------- encoding


def _check_streams(streams: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    if not isinstance(streams, Mapping):
        raise TypeError(f"streams must be a mapping name -> bytes, got {type(streams).__name__}")
    items: list[tuple[str, bytes]] = []
    for name, blob in streams.items():
        if not isinstance(name, str) or not _STREAM_RE.match(name):
            raise ValueError(
                f"stream name must be 1..{MAX_STREAM_NAME} characters from [A-Za-z0-9_], got {name!r}"
            )
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream {name!r} must be bytes, got {type(blob).__name__}")
        blob = bytes(blob)
        if len(blob) > _VARINT_MAX:
            raise ValueError(f"stream {name!r} is too large ({len(blob)} bytes)")
        items.append((name, blob))
    if len(items) > MAX_STREAMS:
        raise ValueError(f"at most {MAX_STREAMS} streams, got {len(items)}")
    for req in REQUIRED_STREAMS:
        if req not in streams:
            raise ValueError(f"missing required stream {req!r}")
    return items


def pack(header: Header, streams: Mapping[str, bytes]) -> bytes:
    """Serialize ``header`` and ``streams`` (name -> bytes, kept in order) into a ``.tcm`` file."""
    if not isinstance(header, Header):
        raise TypeError(f"header must be a Header, got {type(header).__name__}")
    items = _check_streams(streams)
    flags = MODES.index(header.mode) | (PAD_MODES.index(header.pad_mode) << _PAD_SHIFT)
    if header.has_weights_id:
        flags |= _FLAG_WEIGHTS
    model = header.model.encode("ascii")
    out = bytearray(MAGIC)
    out += bytes((header.version, flags, len(model)))
    out += model
    if header.has_weights_id:
        out += header.weights_id
    out += _F32.pack(header.quality)
    for v in (header.height, header.width, *header.z_shape):
        out += _varint.encode(v)
    out.append(len(items))
    for name, blob in items:
        out.append(len(name))
        out += name.encode("ascii")
        out += _varint.encode(len(blob))
    for _, blob in items:
        out += blob
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


# --------------------------------------------------------------------------------------- decoding


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise FormatError(
                f"truncated file: ends inside the {what} (offset {self.pos}, need {n} bytes, "
                f"have {len(self.data) - self.pos})"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value, self.pos = _varint.decode(self.data, self.pos, what, max_bytes=_VARINT_MAX_BYTES, max_value=_VARINT_MAX)
        return value


def _to_bytes(data: bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes, got {type(data).__name__}")


def _check_magic(data: bytes) -> None:
    head = data[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise FormatError(f"bad magic bytes {head.hex()}: not a .tcm file (expected {MAGIC.hex()})")
    if len(head) < len(MAGIC):
        raise FormatError(f"truncated file: {len(data)} bytes, too short for the magic bytes")


def _parse_model_name(r: _Reader, known_models: Collection[str] | None) -> str:
    n = r.byte("model name length")
    if not 1 <= n <= MAX_MODEL_NAME:
        raise FormatError(f"bad model name length {n} (must be 1..{MAX_MODEL_NAME})")
    raw = r.take(n, "model name")
    try:
        model = raw.decode("ascii")
    except UnicodeDecodeError:
        model = ""
    if not _MODEL_RE.match(model):
        raise FormatError(f"bad model name {raw!r}: not a valid model identifier")
    if known_models is not None and model not in known_models:
        known = ", ".join(sorted(known_models)) or "none"
        raise FormatError(f"unknown model {model!r} (known models: {known})")
    return model


def _parse_sizes(r: _Reader, max_pixels: int | None) -> tuple[int, int, int, int]:
    """(height, width, z height, z width), validated against the per-side limit, the budget and each other."""
    height = r.varint("image height")
    width = r.varint("image width")
    if height == 0 or width == 0:
        raise FormatError(f"bad image size {height}x{width}: zero dimension")
    if height > MAX_DIMENSION or width > MAX_DIMENSION:
        raise FormatError(
            f"absurd image size {height}x{width}: a side exceeds {MAX_DIMENSION} pixels"
        )
    if max_pixels is not None and height * width > max_pixels:
        raise FormatError(
            f"image size {height}x{width} = {height * width} pixels exceeds the pixel budget "
            f"of {max_pixels}"
        )
    zh = r.varint("z height")
    zw = r.varint("z width")
    if not (_padded_ok(height, zh) and _padded_ok(width, zw)):
        raise FormatError(
            f"z_shape {zh}x{zw} inconsistent with image size {height}x{width} "
            f"(padded size {PAD_UNIT * zh}x{PAD_UNIT * zw})"
        )
    return height, width, zh, zw


def _parse_header(
    r: _Reader,
    *,
    max_pixels: int | None,
    known_models: Collection[str] | None,
) -> Header:
    _check_magic(r.data)
    r.pos = len(MAGIC)
    version = r.byte("version byte")
    if version not in VERSIONS:
        readable = " and ".join(str(v) for v in VERSIONS)
        raise FormatError(f"unsupported format version {version} (this decoder reads versions {readable})")
    flags = r.byte("flags byte")
    if flags & _RESERVED_MASK:
        raise FormatError(f"bad flags byte 0x{flags:02x}: reserved bits set")
    mode_code = flags & _MODE_MASK
    if mode_code >= len(MODES):
        raise FormatError(f"unknown image mode code {mode_code} (known: {', '.join(MODES)})")
    mode = MODES[mode_code]
    pad_mode = PAD_MODES[(flags >> _PAD_SHIFT) & 1]

    model = _parse_model_name(r, known_models)
    weights_id = r.take(WEIGHTS_ID_SIZE, "weights id") if flags & _FLAG_WEIGHTS else _NO_WEIGHTS_ID
    if flags & _FLAG_WEIGHTS and weights_id == _NO_WEIGHTS_ID:
        raise FormatError("bad weights id: flagged present but all zero")

    (quality,) = _F32.unpack(r.take(4, "quality"))
    if not math.isfinite(quality) or not 0.0 <= quality <= QUALITY_MAX:
        raise FormatError(f"quality {quality} out of range [0, {QUALITY_MAX}]")

    height, width, zh, zw = _parse_sizes(r, max_pixels)
    try:
        return Header(
            model=model,
            weights_id=weights_id,
            quality=quality,
            height=height,
            width=width,
            mode=mode,
            pad_mode=pad_mode,
            z_shape=(zh, zw),
            version=version,
        )
    except (ValueError, TypeError) as exc:  # pragma: no cover - all fields were checked above
        raise FormatError(f"bad header: {exc}") from None


def _check_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")


def read_header(
    data: bytes,
    *,
    max_pixels: int | None = None,
    known_models: Collection[str] | None = None,
) -> Header:
    """Parse and validate only the header (no stream table, no CRC check): cheap, for ``tcm info``.

    ``data`` may be just a prefix of the file (the header is at most 61 bytes). By default no pixel
    budget and no model check are applied; the per-side limit always is.
    """
    _check_max_pixels(max_pixels)
    return _parse_header(_Reader(_to_bytes(data)), max_pixels=max_pixels, known_models=known_models)


def _parse_stream_table(r: _Reader) -> list[tuple[str, int]]:
    """The (name, length) of every stream: count, unique valid names, the required ones present."""
    count = r.byte("stream count")
    if not len(REQUIRED_STREAMS) <= count <= MAX_STREAMS:
        raise FormatError(f"bad stream count {count} (must be {len(REQUIRED_STREAMS)}..{MAX_STREAMS})")
    table: list[tuple[str, int]] = []
    seen: set[str] = set()
    for i in range(count):
        n = r.byte(f"stream {i} name length")
        if not 1 <= n <= MAX_STREAM_NAME:
            raise FormatError(f"bad stream {i} name length {n} (must be 1..{MAX_STREAM_NAME})")
        raw = r.take(n, f"stream {i} name")
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            name = ""
        if not _STREAM_RE.match(name):
            raise FormatError(f"bad stream {i} name {raw!r}")
        if name in seen:
            raise FormatError(f"duplicate stream {name!r}")
        seen.add(name)
        table.append((name, r.varint(f"stream {name!r} length")))
    for req in REQUIRED_STREAMS:
        if req not in seen:
            raise FormatError(f"missing required stream {req!r}")
    return table


def unpack(
    data: bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    known_models: Collection[str] | None = None,
) -> tuple[Header, dict[str, bytes]]:
    """Validate a ``.tcm`` file and return its header and streams (name -> bytes, in file order).

    ``max_pixels``: reject images with more than this many pixels (``None``: no budget).
    ``known_models``: reject model names not in it (``None``: do not check).
    Raises :class:`~tcmcodec.errors.FormatError` on any problem; see ``docs/format.md`` for the order
    of the checks.
    """
    _check_max_pixels(max_pixels)
    data = _to_bytes(data)
    r = _Reader(data)
    header = _parse_header(r, max_pixels=max_pixels, known_models=known_models)

    table = _parse_stream_table(r)
    payload = sum(length for _, length in table)
    expected = r.pos + payload + _CRC_SIZE
    if len(data) < expected:
        raise FormatError(
            f"truncated file: {len(data)} bytes, but the stream table needs {expected} "
            f"({payload} payload bytes + {_CRC_SIZE} CRC bytes after offset {r.pos})"
        )
    if len(data) > expected:
        raise FormatError(f"trailing garbage: {len(data) - expected} unexpected bytes after the CRC")

    body = len(data) - _CRC_SIZE
    (stored,) = struct.unpack_from("<I", data, body)
    actual = zlib.crc32(memoryview(data)[:body]) & 0xFFFFFFFF
    if stored != actual:
        raise FormatError(f"CRC mismatch: stored 0x{stored:08x}, computed 0x{actual:08x} (file is corrupt)")

    streams: dict[str, bytes] = {}
    pos = r.pos
    for name, length in table:
        streams[name] = data[pos : pos + length]
        pos += length
    return header, streams


def sniff(prefix: bytes) -> bool:
    """True when ``prefix`` (the first bytes of a file, >= 4 of them) starts with the ``.tcm`` magic."""
    return bytes(prefix[: len(MAGIC)]) == MAGIC
