"""Unsigned LEB128 varints, the one implementation of the package (container header, stream table,
entropy-coded stream headers): 7 bits per byte, low group first, high bit on every byte but the last.

Decoding is strict: the encoding must be minimal (no trailing ``0x00`` group), so every value has
exactly one valid encoding, and at most ``max_bytes`` long.
"""

from __future__ import annotations

from tcmcodec.errors import FormatError

__all__ = ["encode", "decode"]


def encode(value: int) -> bytes:
    """The minimal LEB128 encoding of a non-negative integer."""
    if value < 0:
        raise ValueError(f"varints are unsigned, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode(data: bytes, pos: int, what: str, *, max_bytes: int = 5, max_value: int = (1 << 32) - 1) -> tuple[int, int]:
    """Read the varint at ``data[pos:]``.

    Args:
        data: the bytes.
        pos: where the varint starts.
        what: the field's name, for the error messages.
        max_bytes: longest accepted encoding.
        max_value: largest accepted value.

    Returns:
        ``(value, position after it)``.

    Raises:
        FormatError: truncated (``truncated file: ends inside the <what> ...``), longer than
            ``max_bytes``, non-minimal, or above ``max_value``.
    """
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise FormatError(f"truncated file: ends inside the {what} (offset {pos + i}, need 1 bytes, have 0)")
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i > 0:
                raise FormatError(f"bad {what}: non-minimal varint at offset {pos}")
            if value > max_value:
                raise FormatError(f"bad {what}: varint at offset {pos} exceeds {max_value}")
            return value, pos + i + 1
    raise FormatError(f"bad {what}: varint at offset {pos} longer than {max_bytes} bytes")
