"""Integer CDF tables and a vectorized range coder with escapes, on top of ``constriction``.

Tables: :class:`~tcmcodec.entropy.tables.CdfTables` (K integer pmfs of ``PRECISION = 24`` bits, each
with an ESCAPE symbol; see :mod:`tcmcodec.entropy.tables`), re-exported here.

Order. ``encode(symbols, indexes, tables)`` codes its symbols grouped by table: all of table 0's
symbols in raster (C) order, then table 1's, ... (one ``constriction`` call per non-empty table),
then the escaped values of the call, in that same order. The coder is a queue
(``constriction.stream.queue.RangeEncoder``): decode calls mirror the encode calls. An escaped
value x of a table with range ``[lo, hi]`` is a side bit (``Uniform(2)``, 1 if ``x > hi``), then
``d1 = x - hi`` or ``lo - x`` (>= 1) Elias-gamma style: ``nb = bit_length(d1)`` in ``1 .. 33``
(fixed Categorical, P(nb) ~ ``2**-nb``), then the ``nb - 1`` low bits of ``d1`` as at most two
uniform chunks of <= 16 bits, low chunk first; each field for all escapes of a call at once.

Blob layout (``SymbolEncoder.finish()``)::

    uvarint(n)  |  words: m x uint32 little-endian  |  crc32: uint32 little-endian

``n`` is the number of table-coded symbols (escape fields not counted; LEB128, <= 10 bytes),
``words`` the sealed range-coder output, ``crc32`` (``zlib.crc32``) covers everything before it.
The decoder checks CRC and alignment up front, refuses to decode past ``n`` symbols and checks
decoded escapes: a corrupt, truncated or exhausted stream raises
:class:`~tcmcodec.errors.FormatError` (never a crash, a hang or silently wrong output).

Speed. Grouping is one in-place sort of ``key << b | position`` (numpy's SIMD sort, no temporary
arrays: see ``_grouping_order``); the symbol counts per table come from ``torch.bincount`` on the
keys. ``constriction`` holds the GIL while it decodes, so for large decode calls a helper thread
(:class:`_GroupingHelper`) takes the GIL only about ``_BATCHES`` times: it sorts (GIL-free) beside
the decoding, then scatters each further eighth of the decoded symbols to raster order while the
next groups decode; the decoding thread and the helper split what is left at the end. A helper that
took every decoded group over (an earlier design) contended for the GIL with each hand-off and made
the speed bimodal (30-47 M symbols/s); one that scattered only after the last group left half the
scatter (~11 ms of 77 per 3 M symbols) on the critical path.
"""

from __future__ import annotations

import math
import sys
import threading
import zlib

import constriction
import numpy as np
import torch

from tcmcodec.entropy.tables import (
    _INT32_MAX,
    _INT32_MIN,
    ESCAPE_PRECISION,
    MAX_TABLE_LENGTH,
    PRECISION,
    CdfTables,
)
from tcmcodec import _varint
from tcmcodec.errors import FormatError

__all__ = [
    "PRECISION",
    "ESCAPE_PRECISION",
    "MAX_TABLE_LENGTH",
    "CdfTables",
    "SymbolEncoder",
    "SymbolDecoder",
    "encode_symbols",
    "decode_symbols",
]

_model = constriction.stream.model
_queue = constriction.stream.queue

_MAX_NB = 33  # bit_length(d + 1) <= 33 for int32 values and int32 table edges.
_CHUNK = 16

# Fixed models of the escape fields (built once; identical in encoder and decoder).
_SIDE_MODEL = _model.Uniform(2)
_NB_MODEL = _model.Categorical(np.ldexp(1.0, -np.arange(1, _MAX_NB + 1)), perfect=False)
_UNIFORM_FAMILY = _model.Uniform()

#: Fewest bits a table-coded symbol can cost: the ESCAPE keeps at least 2**-16 of every table.
_MIN_SYMBOL_BITS = -math.log2(1 - 2.0**-16)


def _coder_call(fn, *args):
    """Calls a constriction method, turning any failure into a one-line FormatError."""
    try:
        return fn(*args)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as err:  # noqa: BLE001 - pyo3 panics derive from BaseException
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FormatError(f"corrupt entropy-coded stream: {msg}") from err


def _grouping_order(keys: np.ndarray) -> np.ndarray:
    """Positions grouped by table (table 0's first), raster order within a table, (N,).

    One in-place sort of ``key << b | position`` (all values distinct, so any sort is stable; numpy's
    SIMD sort, which runs without the GIL, so the decoder computes it on a helper thread while
    ``constriction`` decodes), masked back to the position. No temporary array: the radix sort of
    ``np.argsort(kind="stable")`` allocates its result and an equal scratch array, which glibc hands
    back to the kernel after every call, so each call page-faulted ~26 MB in afresh (3 M symbols on a
    fresh helper thread: 80 ms instead of 15, measured).

    uint32 values when the keys are 8-bit and N <= 2**24 (3 M symbols: 11 ms with AVX-512, 14 ms with
    AVX2 only), else uint64 (22 / 49 ms: on AVX2 machines that no longer hides behind the decoding, 37-40
    instead of 47 M symbols/s measured with numpy's AVX-512 kernels disabled).

    Args:
        keys: (N,) uint8 or uint16 table keys in raster order.

    Returns:
        (N,) uint32 or int64 positions.
    """
    n = keys.size
    narrow = keys.dtype == np.uint8 and n <= 1 << 24  # key << 24 | position fits in uint32
    dtype, width = (np.uint32, 8) if narrow else (np.uint64, 16)
    shift = 8 * np.dtype(dtype).itemsize - width
    order = np.arange(n, dtype=dtype)  # (N,) the position in the low bits
    words = order.view(f"u{width // 8}").reshape(n, 4)  # (N, 4) uint8 or uint16 words of each value
    words[:, 3 if sys.byteorder == "little" else 0] = keys  # (N,) the table key in the top bits
    order.sort()
    np.bitwise_and(order, dtype((1 << shift) - 1), out=order)
    return order if narrow else order.view(np.int64)


_THREAD_MIN_SYMBOLS = 1 << 16
#: The helper scatters decoded symbols in batches of at least this fraction of a call's symbols.
_BATCHES = 8


class _GroupingHelper:
    """A helper thread for one large decode call: sorts, then scatters decoded symbols in batches.

    ``constriction`` holds the GIL while it decodes, so a helper that needs the GIL for every group
    (to hand each decoded group over) waits on the decoding thread, and the two ping-pong. This
    helper needs it about ``_BATCHES`` times: it starts the (GIL-free) sort before the first
    group is decoded, so the sort runs beside the decoding; then, each time the decoding thread has
    decoded another ``1 / _BATCHES`` of the symbols, it scatters them to raster order (numpy's
    indexed assignment releases the GIL) while the next groups are decoded. What is left when the
    last group is decoded, the helper and the decoding thread scatter half each.

    Args:
        keys: (N,) table keys in raster order.
        grouped: (N,) decoded values in grouping order (filled by the decoding thread).
        out: (N,) destination in raster order.
    """

    def __init__(self, keys: np.ndarray, grouped: np.ndarray, out: np.ndarray) -> None:
        self._keys, self._grouped, self._out = keys, grouped, out
        self._batch = max(1, keys.size // _BATCHES)
        self._progress = threading.Event()  # set: more symbols decoded, or decoding ended
        self._split = threading.Event()  # set: the helper stopped at ``_done`` for the last split
        self._ready = 0  # symbols decoded so far (written by the decoding thread)
        self._signalled = 0
        self._ended = False
        self._failed = False
        self._done = 0  # symbols the helper has scattered when it sets ``_split``
        self._order: np.ndarray | None = None
        self._error: BaseException | None = None
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="tcmcodec-coder", daemon=True
        )
        self._thread.start()  # no pool: no global state, fork-safe
        started.wait()  # the helper holds the GIL until its sort releases it

    def _run(self, started: threading.Event) -> None:
        done = 0
        try:
            started.set()
            self._order = _grouping_order(self._keys)
            while True:
                self._progress.wait()
                self._progress.clear()
                ready, ended = self._ready, self._ended  # read after clear(): no update is lost
                if ended:
                    break
                self._scatter(done, ready)
                done = ready
        except BaseException as err:  # noqa: BLE001 - re-raised by the decoding thread
            self._error = err
        finally:
            self._done = done
            self._split.set()
        if self._error is None and not self._failed:
            try:
                self._scatter(done, (done + self._keys.size) // 2)
            except BaseException as err:  # noqa: BLE001 - re-raised by the decoding thread
                self._error = err

    def _scatter(self, start: int, stop: int) -> None:
        """Copies decoded values ``grouped[start:stop]`` to their raster positions in ``out``."""
        idx = self._order[start:stop]
        self._out[idx] = self._grouped[start:stop]

    def advance(self, decoded: int) -> None:
        """Called by the decoding thread after each group: ``decoded`` symbols are decoded so far."""
        self._ready = decoded
        if decoded - self._signalled >= self._batch:
            self._signalled = decoded
            self._progress.set()

    def finish(self, failed: bool) -> np.ndarray | None:
        """Called by the decoding thread once every group is decoded (or decoding failed).

        Args:
            failed: True when decoding raised; the helper then only ends.

        Returns:
            The grouping order (N,) with ``out`` filled, or None when ``failed``.
        """
        self._failed = failed
        self._ended = True
        self._progress.set()
        if failed:
            self._thread.join()  # the sort ends by itself; nothing is left running
            return None
        self._split.wait()
        if self._error is None:
            n = self._keys.size
            self._scatter((self._done + n) // 2, n)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._order


def _table_keys(indexes: np.ndarray, tables: CdfTables) -> tuple[np.ndarray, np.ndarray]:
    """Validates table indexes; returns them as small keys and the symbol count per table.

    Args:
        indexes: integer array, any shape, values in ``[0, len(tables))``.
        tables: the table set.

    Returns:
        ``(keys, counts)``: ``keys`` (N,) uint8 (uint16 beyond 256 tables) in raster order,
        ``counts`` (K,) int64.

    Raises:
        ValueError: on a non-integer dtype or an index out of range.
    """
    if not isinstance(tables, CdfTables):
        raise ValueError(f"tables must be a CdfTables, got {type(tables).__name__}")
    num = len(tables)
    flat = indexes.reshape(-1)
    if flat.size == 0:
        return flat.astype(np.uint8), np.zeros(num, dtype=np.int64)
    if not np.issubdtype(flat.dtype, np.integer):
        raise ValueError(f"indexes must be integers, got dtype {flat.dtype}")
    if int(flat.min()) < 0 or int(flat.max()) >= num:  # two SIMD passes, no int64 copy
        raise ValueError(f"indexes must lie in [0, {num})")
    keys = flat.astype(np.uint8 if num <= 256 else np.uint16)
    if keys.dtype == np.uint8:  # torch counts uint8 without widening to int64 first (4x numpy)
        counts = torch.bincount(torch.from_numpy(keys), minlength=num).numpy()
    else:
        counts = np.bincount(keys, minlength=num)
    return keys, counts.astype(np.int64, copy=False)


def _join_escapes(
    escapes: list[tuple[np.ndarray, int, int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenates per-table escape records ``(array (E_k,), lo_k, len_k)`` into (E,) arrays."""
    sizes = [e[0].size for e in escapes]
    lo = np.repeat(np.array([e[1] for e in escapes], dtype=np.int64), sizes)
    ln = np.repeat(np.array([e[2] for e in escapes], dtype=np.int64), sizes)
    return np.concatenate([e[0] for e in escapes]), lo, ln


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values below 2**53 (exact via frexp)."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64)


class SymbolEncoder:
    """Accumulates int32 symbols into one range-coded blob (see the module docstring)."""

    def __init__(self) -> None:
        self._encoder = _queue.RangeEncoder()
        self._count = 0
        self._finished = False

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> None:
        """Appends symbols, each coded with the table named by its index.

        Args:
            symbols: integer array, any shape; every value must fit in int32 (values outside a
                table's range are escaped, losslessly).
            indexes: integer array of the same shape, table index of each symbol in
                ``[0, len(tables))``.
            tables: the table set.

        Raises:
            ValueError: on mismatched shapes, non-integer dtypes, values outside int32, indexes
                out of range, or if ``finish()`` was already called.
        """
        if self._finished:
            raise ValueError("encode() after finish()")
        symbols = np.asarray(symbols)
        indexes = np.asarray(indexes)
        if symbols.shape != indexes.shape:
            raise ValueError(f"symbols {symbols.shape} and indexes {indexes.shape} differ in shape")
        if symbols.size and not np.issubdtype(symbols.dtype, np.integer):
            raise ValueError(f"symbols must be integers, got dtype {symbols.dtype}")
        keys, counts = _table_keys(indexes, tables)
        sym = symbols.reshape(-1)
        if sym.size == 0:
            return
        if sym.dtype != np.int32:
            if sym.min() < _INT32_MIN or sym.max() > _INT32_MAX:
                raise ValueError("symbols must fit in int32")
            sym = sym.astype(np.int32)

        s = sym[_grouping_order(keys)]  # (N,) grouped by table
        escapes: list[tuple[np.ndarray, int, int]] = []
        start = 0
        for k in np.flatnonzero(counts).tolist():
            stop = start + int(counts[k])
            seg = s[start:stop]
            lo, ln = int(tables.offsets[k]), int(tables.lengths[k])
            # v = seg - lo with int32 wrap-around; as uint32 it is < ln exactly for the values
            # inside the table (table ranges lie inside int32, see CdfTables).
            v = seg - np.int32(lo)
            outside = v.view(np.uint32) >= ln
            if outside.any():
                escapes.append((seg[outside], lo, ln))
                v[outside] = ln
            self._encoder.encode(v, tables.models[k])
            start = stop
        self._count += int(sym.size)
        if escapes:
            self._encode_escapes(*_join_escapes(escapes))

    def _encode_escapes(self, x: np.ndarray, lo: np.ndarray, ln: np.ndarray) -> None:
        """Codes escaped values x (E,) of tables with ranges [lo, lo + ln) (E,)."""
        x = x.astype(np.int64)
        lo = lo.astype(np.int64)
        hi = lo + ln.astype(np.int64) - 1
        side = x > hi  # (E,)
        d1 = np.where(side, x - hi, lo - x)  # distance + 1 >= 1, < 2**33
        nb = _bit_length(d1)  # (E,) in 1 .. 33
        mant = d1 - np.left_shift(np.int64(1), nb - 1)  # nb - 1 low bits
        self._encoder.encode(side.astype(np.int32), _SIDE_MODEL)
        self._encoder.encode((nb - 1).astype(np.int32), _NB_MODEL)
        for c in range(2):
            bits = np.clip(nb - 1 - _CHUNK * c, 0, _CHUNK)
            sel = bits > 0
            if sel.any():
                chunk = (mant[sel] >> (_CHUNK * c)) & ((np.int64(1) << bits[sel]) - 1)
                sizes = (np.int64(1) << bits[sel]).astype(np.int32)
                self._encoder.encode(chunk.astype(np.int32), _UNIFORM_FAMILY, sizes)

    def finish(self) -> bytes:
        """Seals the stream and returns the blob; the encoder cannot be used afterwards.

        Returns:
            ``uvarint(n) | words | crc32`` (see the module docstring).
        """
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        words = np.asarray(self._encoder.get_compressed(), dtype="<u4").tobytes()
        body = _varint.encode(self._count) + words
        return body + zlib.crc32(body).to_bytes(4, "little")


class SymbolDecoder:
    """Decodes a blob written by :class:`SymbolEncoder`; calls must mirror the encode calls.

    Args:
        data: the blob (``bytes``, ``bytearray`` or ``memoryview``).

    Raises:
        FormatError: if the blob is truncated, misaligned or fails its checksum.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < 5:
            raise FormatError(f"entropy-coded stream too short ({len(data)} bytes)")
        body, crc = data[:-4], int.from_bytes(data[-4:], "little")
        if zlib.crc32(body) != crc:
            raise FormatError("entropy-coded stream fails its CRC32 check (corrupt or truncated)")
        self._count, pos = _varint.decode(body, 0, "symbol count of the entropy-coded stream", max_bytes=10, max_value=(1 << 63) - 1)
        words = body[pos:]
        if len(words) % 4:
            raise FormatError(f"entropy-coded stream: {len(words)} payload bytes, not whole words")
        n_words = len(words) // 4
        # Every symbol costs at least -log2(1 - 2**-16) bits (no table gives one symbol more than
        # 1 - 2**-16: the ESCAPE keeps 2**-16), and a non-empty stream ends in at least one word.
        min_words = 0 if self._count == 0 else max(1, math.ceil(self._count * _MIN_SYMBOL_BITS / 32))
        if n_words < min_words or (self._count == 0 and n_words):
            raise FormatError(
                f"entropy-coded stream: {n_words} words cannot hold {self._count} symbols (at least {min_words})"
            )
        self._decoder = _queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
        self._used = 0

    @property
    def remaining(self) -> int:
        """Number of table-coded symbols not decoded yet."""
        return self._count - self._used

    def decode(self, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        """Decodes one symbol per index, mirroring an ``encode(symbols, indexes, tables)`` call.

        Args:
            indexes: integer array, any shape; table index of each symbol.
            tables: the same table set the encoder used.

        Returns:
            int32 array of the shape of ``indexes``.

        Raises:
            ValueError: on bad indexes or tables.
            FormatError: if the stream is exhausted or its content is inconsistent.
        """
        indexes = np.asarray(indexes)
        keys, counts = _table_keys(indexes, tables)
        n = keys.size
        if n > self.remaining:
            raise FormatError(
                f"entropy-coded stream exhausted: {n} symbols asked, {self.remaining} left"
            )
        self._used += n
        out = np.empty(n, dtype=np.int32)
        if n == 0:
            return out.reshape(indexes.shape)
        s = np.empty(n, dtype=np.int32)  # (N,) decoded values, grouped by table
        # Large calls: a helper thread sorts into the grouping order while constriction decodes,
        # then helps scatter (see _GroupingHelper).
        helper = _GroupingHelper(keys, s, out) if n >= _THREAD_MIN_SYMBOLS else None
        escapes: list[tuple[np.ndarray, int, int]] = []  # (positions in s, lo, ln)
        failed = True
        try:
            start = 0
            for k in np.flatnonzero(counts).tolist():
                stop = start + int(counts[k])
                values = _coder_call(self._decoder.decode, tables.models[k], stop - start)
                lo, ln = int(tables.offsets[k]), int(tables.lengths[k])
                if int(values.max()) == ln:  # ESCAPE symbols (rare)
                    escapes.append((np.flatnonzero(values == ln) + start, lo, ln))
                np.add(values, np.int32(lo), out=s[start:stop])  # escape slots fixed below
                start = stop
                if helper is not None:
                    helper.advance(stop)
            failed = False
        finally:
            order = None if helper is None else helper.finish(failed)  # always ends the helper
        if order is None:
            order = _grouping_order(keys)
            out[order] = s
        if escapes:
            pos, lo, ln = _join_escapes(escapes)
            out[order[pos]] = self._decode_escapes(lo, ln)
        return out.reshape(indexes.shape)

    def _decode_escapes(self, lo: np.ndarray, ln: np.ndarray) -> np.ndarray:
        """Decodes the escaped values of tables with ranges [lo, lo + ln) (E,)."""
        e = lo.size
        lo = lo.astype(np.int64)
        hi = lo + ln.astype(np.int64) - 1
        side = _coder_call(self._decoder.decode, _SIDE_MODEL, e).astype(bool)
        nb = _coder_call(self._decoder.decode, _NB_MODEL, e).astype(np.int64) + 1
        mant = np.zeros(e, dtype=np.int64)
        for c in range(2):
            bits = np.clip(nb - 1 - _CHUNK * c, 0, _CHUNK)
            sel = bits > 0
            if sel.any():
                sizes = (np.int64(1) << bits[sel]).astype(np.int32)
                chunk = _coder_call(self._decoder.decode, _UNIFORM_FAMILY, sizes)
                mant[sel] |= chunk.astype(np.int64) << (_CHUNK * c)
        d1 = mant + np.left_shift(np.int64(1), nb - 1)
        x = np.where(side, hi + d1, lo - d1)
        if x.min() < _INT32_MIN or x.max() > _INT32_MAX:
            raise FormatError("corrupt entropy-coded stream: escaped value outside int32")
        return x.astype(np.int32)

    def finish(self) -> None:
        """Checks that every coded symbol was decoded.

        Raises:
            FormatError: if symbols are left over (the stream does not match the decode calls).
        """
        if self.remaining:
            raise FormatError(f"entropy-coded stream has {self.remaining} undecoded symbols")
        if not self._decoder.maybe_exhausted():
            raise FormatError("entropy-coded stream has unread words after its last symbol (or was truncated)")


def encode_symbols(
    encoder: SymbolEncoder, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables
) -> None:
    """Functional form of :meth:`SymbolEncoder.encode` (same arguments)."""
    encoder.encode(symbols, indexes, tables)


def decode_symbols(decoder: SymbolDecoder, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
    """Functional form of :meth:`SymbolDecoder.decode` (same arguments and result)."""
    return decoder.decode(indexes, tables)
