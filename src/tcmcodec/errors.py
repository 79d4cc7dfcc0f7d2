"""Exceptions raised by tcmcodec."""

from __future__ import annotations

__all__ = ["FormatError", "ResourceError", "WeightsError", "one_line"]


class FormatError(ValueError):
    """A ``.tcm`` bitstream is malformed, truncated, corrupt or unsupported.

    Raised by the decoder before it allocates anything large. The message is a single line
    that says what is wrong (for example ``"bad magic bytes: not a .tcm file"``).
    """


class ResourceError(MemoryError):
    """An image is too large for this machine: coding it would need more memory than is available.

    Raised before any network runs; the message gives the image size, the estimated and the
    available memory, and what to do.
    """


class WeightsError(OSError):
    """Published weights cannot be had: not in the cache and not downloadable (offline, no network),
    or a file that fails verification (checksum, architecture). The message is one line that says
    where to get the file and how to import it.
    """


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line: ``"FILE: reason"`` for an ``OSError`` naming a file, else
    ``str(exc)`` (or the exception's type name when empty) with all whitespace runs, newlines
    included, collapsed to one space."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        msg = f"{exc.filename}: {exc.strerror}"
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())
