"""Throughput of the entropy coder (``tcmcodec.entropy.coder``) on y-like symbols.

Prints one JSON object: encode and decode symbols/s (median of ``--runs`` runs after one untimed round) of
``SymbolEncoder.encode`` + ``finish`` and ``SymbolDecoder`` + ``decode`` for about ``--symbols``
symbols coded with the 64 Gaussian tables of ``GaussianConditional``.

Workloads:

- ``calibrated`` (default): table indexes drawn from the scale-index histogram of the reference
  test vectors (``/work/shared/reference/tcm/N64``) when available, otherwise from a fixed
  realistic histogram; symbols ``round(N(0, s))`` with ``s`` the table's scale, so the symbols
  follow the model (as with a trained network) and escapes are rare.
- ``reference``: the reference vectors' own ``y_symbols`` / ``scale_index`` tiled; these come from
  random weights and about 28 % of them are escapes, so this is a stress test of the escape path.

Usage: ``python benchmarks/bench_coder.py [--symbols 3000000] [--runs 5] [--workload calibrated]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from tcmcodec.entropy import GaussianConditional, SymbolDecoder, SymbolEncoder

REFERENCE = "/work/shared/reference/tcm"


def _reference_io() -> dict | None:
    """The N64 reference vectors, or None when they are not on this machine."""
    if not os.path.isdir(os.path.join(REFERENCE, "N64")):
        return None
    sys.path.insert(0, REFERENCE)
    from regen import load_io  # noqa: PLC0415

    return load_io("N64")


def make_workload(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Builds (symbols int32 (N,), indexes int32 (N,)) for a workload.

    Args:
        name: ``"calibrated"`` or ``"reference"`` (see the module docstring).
        n: approximate number of symbols (rounded to whole tiles for ``reference``).
        seed: random seed.

    Returns:
        The symbols and their table indexes.
    """
    rng = np.random.default_rng(seed)
    io = _reference_io()
    if name == "reference":
        if io is None:
            raise SystemExit("reference vectors not found")
        reps = max(1, round(n / io["y_symbols"].size))
        return (np.tile(io["y_symbols"].ravel(), reps).astype(np.int32),
                np.tile(io["scale_index"].ravel(), reps).astype(np.int32))
    if io is not None:
        hist = np.bincount(io["scale_index"].ravel(), minlength=64).astype(np.float64)
    else:  # 22 % at the floor, the rest log-normal around index 23
        hist = np.exp(-0.5 * ((np.arange(64) - 23) / 6.0) ** 2)
        hist[0] = 0.28 * hist.sum()
    indexes = rng.choice(64, size=n, p=hist / hist.sum()).astype(np.int32)
    scales = GaussianConditional().scale_table.double().numpy()[indexes]
    symbols = np.round(rng.standard_normal(n) * scales).astype(np.int32)
    return symbols, indexes


def _raw_decode_time(blob: bytes, indexes: np.ndarray, tables) -> float:
    """Seconds of the bare ``constriction`` decode calls of a blob (no grouping, no scatter)."""
    import constriction  # noqa: PLC0415

    counts = np.bincount(indexes, minlength=len(tables))
    start = 1
    while blob[start - 1] & 0x80:  # skip the uvarint symbol count
        start += 1
    words = np.frombuffer(blob[start:-4], dtype="<u4").astype(np.uint32)
    t0 = time.perf_counter()
    decoder = constriction.stream.queue.RangeDecoder(words)
    for k in np.flatnonzero(counts).tolist():
        decoder.decode(tables.models[k], int(counts[k]))
    return time.perf_counter() - t0


def main() -> None:
    """Runs the benchmark and prints the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=3_000_000, help="symbols per run")
    parser.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    parser.add_argument("--workload", choices=("calibrated", "reference"), default="calibrated")
    args = parser.parse_args()

    torch.set_num_threads(1)
    symbols, indexes = make_workload(args.workload, args.symbols)
    tables = GaussianConditional().tables()  # built once, outside the timed region

    # One untimed round first: the first large calls of a process run up to 2-3x slower than later
    # ones (fresh buffers); the steady state is what a long-running process sees.
    warm = SymbolEncoder()
    warm.encode(symbols, indexes, tables)
    SymbolDecoder(warm.finish()).decode(indexes, tables)

    enc_times, dec_times, enc_cpu, dec_cpu, raw_times = [], [], [], [], []
    blob = b""
    for _ in range(args.runs):
        c0, t0 = time.process_time(), time.perf_counter()
        encoder = SymbolEncoder()
        encoder.encode(symbols, indexes, tables)
        blob = encoder.finish()
        c1, t1 = time.process_time(), time.perf_counter()
        decoder = SymbolDecoder(blob)
        decoded = decoder.decode(indexes, tables)
        c2, t2 = time.process_time(), time.perf_counter()
        if not np.array_equal(decoded, symbols):
            raise SystemExit("round trip failed")
        enc_times.append(t1 - t0)
        dec_times.append(t2 - t1)
        enc_cpu.append(c1 - c0)
        dec_cpu.append(c2 - c1)
        raw_times.append(_raw_decode_time(blob, indexes, tables))

    n = int(symbols.size)
    outside = (symbols < tables.offsets[indexes]) | (symbols > tables.highs[indexes])
    print(json.dumps({
        "workload": args.workload,
        "symbols": n,
        "runs": args.runs,
        "escapes": int(outside.sum()),
        "bits_per_symbol": round(len(blob) * 8 / n, 4),
        "encode_symbols_per_s": round(n / statistics.median(enc_times)),
        "decode_symbols_per_s": round(n / statistics.median(dec_times)),
        "encode_s_median": round(statistics.median(enc_times), 4),
        "decode_s_median": round(statistics.median(dec_times), 4),
        "encode_symbols_per_cpu_s": round(n / statistics.median(enc_cpu)),
        "decode_symbols_per_cpu_s": round(n / statistics.median(dec_cpu)),
        "constriction_only_decode_symbols_per_s": round(n / statistics.median(raw_times)),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
