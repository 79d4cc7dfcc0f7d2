"""The header of a ``.tcm`` file: the format's constants and :class:`Header` (validated on construction).

The byte layout is in ``docs/format.md``; :mod:`tcmcodec.codec.container` reads and writes it.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass

__all__ = [
    "MAGIC", "VERSION", "TILED_VERSION", "VERSIONS", "MODES", "PAD_MODES", "MAX_DIMENSION", "DEFAULT_MAX_PIXELS", "QUALITY_MAX",
    "PAD_UNIT", "MAX_PAD_SLACK", "REQUIRED_STREAMS", "Header", "weights_digest",
]

#: File signature. The first byte has the high bit set (like PNG's ``\x89PNG``) so the file is
#: never mistaken for text and 7-bit transfers are detected.
MAGIC = b"\x89TCM"
#: Format version written by default. Version 2 computes the entropy parameters in float64 and
#: carries per-slice check values (a ``"check"`` stream); version 1 files (float32 parameters, no
#: check values) are still read. Version 3 is version 2 with a tiled reconstruction (a ``"tiles"``
#: stream), written for large images only. The container layout is the same for all.
VERSION = 2
#: Version of files whose reconstruction is tiled.
TILED_VERSION = 3
#: Versions :func:`unpack` reads.
VERSIONS: tuple[int, ...] = (1, 2, 3)

#: PIL modes that can be restored, by their 3-bit code in the flags byte (the index).
MODES: tuple[str, ...] = ("L", "RGB", "RGBA", "LA")
#: Padding modes, by their 1-bit code in the flags byte (the index).
PAD_MODES: tuple[str, ...] = ("replicate", "zero")

#: Largest accepted image side, in pixels (height and width are 1..MAX_DIMENSION).
MAX_DIMENSION = 65535
#: Default pixel budget (height * width) of :func:`unpack`: 2**26, about 67 Mpx (8192 x 8192).
#: A tiny file can legitimately describe a huge flat image, and decoding costs about 2 kB of memory
#: and a fixed amount of network compute per pixel, so the decoder refuses more unless asked.
DEFAULT_MAX_PIXELS = 1 << 26
#: Largest accepted quality. 0.0 means "fixed-rate model"; the codec checks the model's own range.
QUALITY_MAX = 16.0
#: Total downsampling factor between the image and the hyper-latent z.
PAD_UNIT = 64
#: The padded size ``PAD_UNIT * z`` of each side must satisfy ``side <= padded < side + MAX_PAD_SLACK``
#: (padding to any multiple of 64 or 128 qualifies; this bounds what a decoder allocates).
MAX_PAD_SLACK = 128
#: Streams every file must carry.
REQUIRED_STREAMS: tuple[str, ...] = ("z", "y")

MAX_MODEL_NAME = 32
WEIGHTS_ID_SIZE = 8
_NO_WEIGHTS_ID = bytes(WEIGHTS_ID_SIZE)
_MODEL_RE = re.compile(r"[A-Za-z0-9._+-]{1,%d}\Z" % MAX_MODEL_NAME)
_F32 = struct.Struct("<f")


def _to_float32(value: float) -> float:
    return _F32.unpack(_F32.pack(value))[0]


def _padded_ok(side: int, z: int) -> bool:
    padded = PAD_UNIT * z
    return side <= padded < side + MAX_PAD_SLACK


def weights_digest(data: bytes) -> bytes:
    """``sha256(data)[:8]``: an 8-byte identity of arbitrary bytes (tests, tools).

    The codec stores ``tcmcodec.zoo.weights_id(model)`` instead: SHA-256 over the state dict's
    names, shapes and float32 values, truncated to 8 bytes.
    """
    return hashlib.sha256(data).digest()[:WEIGHTS_ID_SIZE]


@dataclass(frozen=True)
class Header:
    """Everything the decoder needs besides the coded streams.

    ``quality`` is rounded to the nearest float32 on construction (that is what the file stores), so
    ``unpack(pack(h, s))[0] == h``; encoders should condition the model on ``header.quality``.
    ``z_shape=None`` means "derive it": ``(ceil(height / 64), ceil(width / 64))``.
    ``weights_id=None`` is accepted as ``bytes(8)`` (unknown weights; not stored in the file).
    ``version`` is the format version (see :data:`VERSIONS`); writers use the default.
    """

    model: str
    weights_id: bytes
    quality: float
    height: int
    width: int
    mode: str = "RGB"
    pad_mode: str = "replicate"
    z_shape: tuple[int, int] | None = None
    version: int = VERSION

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or self.version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {self.version!r}")
        # model
        if not isinstance(self.model, str) or not _MODEL_RE.match(self.model):
            raise ValueError(
                f"model must be 1..{MAX_MODEL_NAME} ASCII characters from [A-Za-z0-9._+-], "
                f"got {self.model!r}"
            )
        # weights_id
        wid = self.weights_id
        if wid is None:
            wid = _NO_WEIGHTS_ID
        if not isinstance(wid, (bytes, bytearray, memoryview)):
            raise TypeError(f"weights_id must be bytes, got {type(wid).__name__}")
        wid = bytes(wid)
        if len(wid) != WEIGHTS_ID_SIZE:
            raise ValueError(f"weights_id must be {WEIGHTS_ID_SIZE} bytes, got {len(wid)}")
        object.__setattr__(self, "weights_id", wid)
        # quality
        q = self.quality
        if isinstance(q, bool) or not isinstance(q, (int, float)):
            raise TypeError(f"quality must be a float, got {type(q).__name__}")
        q = float(q)
        if not math.isfinite(q) or not 0.0 <= q <= QUALITY_MAX:
            raise ValueError(f"quality must be in [0, {QUALITY_MAX}] (0 = fixed-rate), got {q}")
        object.__setattr__(self, "quality", _to_float32(q))
        # dimensions
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
            if not 1 <= v <= MAX_DIMENSION:
                raise ValueError(f"{name} must be in 1..{MAX_DIMENSION}, got {v}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {self.pad_mode!r}")
        # z_shape
        zs = self.z_shape
        if zs is None:
            zs = (-(-self.height // PAD_UNIT), -(-self.width // PAD_UNIT))
        try:
            zh, zw = zs
        except (TypeError, ValueError):
            raise ValueError(f"z_shape must be a pair of ints, got {zs!r}") from None
        for v in (zh, zw):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"z_shape must be a pair of ints, got {zs!r}")
        if not (_padded_ok(self.height, zh) and _padded_ok(self.width, zw)):
            raise ValueError(
                f"z_shape {(zh, zw)} does not match image size {self.height}x{self.width}: need "
                f"side <= {PAD_UNIT}*z < side + {MAX_PAD_SLACK}"
            )
        object.__setattr__(self, "z_shape", (int(zh), int(zw)))

    @property
    def padded_size(self) -> tuple[int, int]:
        """(height, width) of the padded image the model codes: ``64 * z_shape``."""
        return (PAD_UNIT * self.z_shape[0], PAD_UNIT * self.z_shape[1])

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("RGBA", "LA")

    @property
    def has_weights_id(self) -> bool:
        return self.weights_id != _NO_WEIGHTS_ID
