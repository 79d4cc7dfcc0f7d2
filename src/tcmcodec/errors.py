"""Exceptions raised by tcmcodec."""

from __future__ import annotations

__all__ = ["FormatError"]


class FormatError(ValueError):
    """A ``.tcm`` bitstream is malformed, truncated, corrupt or unsupported.

    Raised by the decoder before it allocates anything large. The message is a single line
    that says what is wrong (for example ``"bad magic bytes: not a .tcm file"``).
    """
