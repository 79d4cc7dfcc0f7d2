"""Fuzz the ``.tcm`` decoder: every mutated file must end in a FormatError (or a ResourceError for an image
too large for the machine), never another exception, a hang or a crash.

Mutations of a few small valid files (written here with the shipped ``tcm-xs``):

- ``random``: random bytes (with the magic, so that parsing goes past the first check), any length;
- ``truncate``: a random prefix;
- ``flip``: 1..8 random bit flips anywhere (the file CRC then catches them);
- ``header``: one header field changed (version, flags, model name, weights id, quality, height, width,
  z shape), the file CRC recomputed;
- ``table``: a stream removed, renamed, duplicated or given another length, the file CRC recomputed;
- ``words``: bits flipped or words added / removed inside the ``z`` / ``y`` / ``check`` / ``alpha``
  streams, the stream CRC and the file CRC recomputed (reaches the range decoder and the networks);
- ``bomb``: a valid header declaring up to 65535 x 65535 pixels with small plausible streams.

    python benchmarks/fuzz_decoder.py --inputs 10000 --seed 0 -o fuzz.json

Prints (and writes) one JSON object: counts per outcome and per mutation, the slowest input, the peak RSS.
Each decode runs under a wall-clock alarm (``--timeout``); a decode that exceeds it counts as a hang.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tcmcodec import ResourceError, codec
from tcmcodec.codec import container
from tcmcodec.errors import FormatError

KODAK = Path(os.environ.get("TCMCODEC_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared") / "data" / "kodak"


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Hang()


def _seal(body: bytes) -> bytes:
    """A file body with its CRC-32 recomputed (the last 4 bytes replaced)."""
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _pack(header: container.Header, streams: dict[str, bytes]) -> bytes:
    try:
        return container.pack(header, streams)
    except (ValueError, TypeError):
        return b""


def base_files(model) -> list[bytes]:
    """Small valid files: RGB, RGBA (alpha stream), gray, odd sizes."""
    with Image.open(KODAK / "kodim23.png") as im:
        img = im.convert("RGB")
    crops = [img.crop((0, 0, 64, 64)), img.crop((100, 100, 171, 139)), img.crop((300, 90, 348, 130))]
    rgba = crops[1].copy()
    rgba.putalpha(Image.fromarray((np.arange(71 * 39) % 256).astype(np.uint8).reshape(39, 71)))
    files = [codec.compress(c, model, quality=q) for c, q in zip(crops, (1.0, 4.5, 8.0))]
    files.append(codec.compress(rgba, model, quality=3.0))
    files.append(codec.compress(crops[0].convert("L"), model, quality=6.0))
    return files


def _mutate_header(rng: np.random.Generator, data: bytes) -> bytes:
    h, streams = container.unpack(data)
    field = rng.choice(["version", "flags", "model", "weights", "quality", "height", "width", "z"])
    if field in ("version", "flags"):  # raw byte at offset 4 / 5
        pos = 4 if field == "version" else 5
        return _seal(data[:pos] + bytes([int(rng.integers(0, 256))]) + data[pos + 1:-4])
    kw = dict(model=h.model, weights_id=h.weights_id, quality=h.quality, height=h.height, width=h.width,
              mode=h.mode, pad_mode=h.pad_mode, z_shape=h.z_shape, version=h.version)
    if field == "model":
        kw["model"] = str(rng.choice(["tcm-s", "tcm-l", "custom", "x" * 32, "tcm-xs"]))
    elif field == "weights":
        kw["weights_id"] = rng.bytes(8)
    elif field == "quality":
        kw["quality"] = float(rng.choice([0.0, 0.5, 1.0, 8.0, 8.5, 16.0, float(rng.uniform(0, 16))]))
    elif field in ("height", "width"):
        kw[field] = int(rng.choice([1, 2, 63, 64, 65, 128, 1000, 65535, int(rng.integers(1, 65536))]))
        kw["z_shape"] = None
    else:
        kw["z_shape"] = (int(rng.integers(0, 5)), int(rng.integers(0, 5)))
    try:
        return _pack(container.Header(**kw), streams) or data
    except (ValueError, TypeError):
        return data


def _mutate_table(rng: np.random.Generator, data: bytes) -> bytes:
    h, streams = container.unpack(data)
    names = list(streams)
    op = rng.choice(["drop", "rename", "resize", "add"])
    name = names[int(rng.integers(len(names)))]
    if op == "drop":
        streams.pop(name)
    elif op == "rename":
        streams[str(rng.choice(["zz", "yy", "alpha", "check", "q"]))] = streams.pop(name)
    elif op == "resize":
        blob = streams[name]
        streams[name] = blob[: int(rng.integers(0, len(blob) + 1))] if rng.random() < 0.5 else blob + rng.bytes(8)
    else:
        streams[str(rng.choice(["extra", "alpha", "check"]))] = rng.bytes(int(rng.integers(0, 40)))
    return _pack(h, streams) or data


def _mutate_words(rng: np.random.Generator, data: bytes) -> bytes:
    """Change an entropy-coded stream inside and recompute its CRC (stream CRC = its last 4 bytes)."""
    h, streams = container.unpack(data)
    name = str(rng.choice([n for n in ("z", "y", "check", "alpha") if n in streams]))
    blob = bytearray(streams[name][:-4] if name in ("z", "y") else streams[name])
    op = rng.choice(["flip", "append", "cut", "zero"])
    if op == "flip" and blob:
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(blob)))
            blob[i] ^= 1 << int(rng.integers(8))
    elif op == "append":
        blob += rng.bytes(4 * int(rng.integers(1, 5)))
    elif op == "cut" and len(blob) > 4:
        del blob[-4 * int(rng.integers(1, max(2, len(blob) // 4))):]
    elif blob:
        i = int(rng.integers(len(blob)))
        blob[i:] = bytes(len(blob) - i)
    body = bytes(blob)
    streams[name] = body + zlib.crc32(body).to_bytes(4, "little") if name in ("z", "y") else body
    return _pack(h, streams) or data


def _bomb(rng: np.random.Generator, data: bytes, model) -> bytes:
    from tcmcodec import _varint

    h, _ = container.unpack(data)
    height, width = int(rng.integers(1, 65536)), int(rng.integers(1, 65536))
    if rng.random() < 0.5:
        height, width = int(rng.choice([1, 4096, 8192, 65535])), int(rng.choice([1, 4096, 8192, 65535]))
    hdr = container.Header(model="tcm-xs", weights_id=h.weights_id, quality=4.0, height=height, width=width)
    zh, zw = hdr.z_shape
    words = rng.bytes(4 * int(rng.integers(0, 64)))

    def stream(count: int) -> bytes:
        body = _varint.encode(count) + words
        return body + zlib.crc32(body).to_bytes(4, "little")

    cfg = model.config
    streams = {"z": stream(cfg.z_channels * zh * zw), "y": stream(cfg.M * 16 * zh * zw), "check": rng.bytes(8)}
    return _pack(hdr, streams) or data


def mutate(rng: np.random.Generator, kind: str, data: bytes, model) -> bytes:
    if kind == "random":
        return container.MAGIC + rng.bytes(int(rng.integers(0, 400)))
    if kind == "truncate":
        return data[: int(rng.integers(0, len(data)))]
    if kind == "flip":
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == "header":
        return _mutate_header(rng, data)
    if kind == "table":
        return _mutate_table(rng, data)
    if kind == "words":
        return _mutate_words(rng, data)
    return _bomb(rng, data, model)


KINDS = ("random", "truncate", "flip", "header", "table", "words", "bomb")


def run(n_inputs: int, seed: int, timeout: float, model=None) -> dict:
    """Decode ``n_inputs`` mutated files; return the counts (see the module docstring)."""
    if model is None:
        model = codec.Codec("tcm-xs").model
    rng = np.random.default_rng(seed)
    bases = base_files(model)
    counts = {"format_error": 0, "resource_error": 0, "decoded": 0, "other_exception": 0, "hang": 0}
    per_kind = {k: dict.fromkeys(counts, 0) for k in KINDS}
    failures, slowest = [], (0.0, "")
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(n_inputs):
            kind = KINDS[i % len(KINDS)]
            data = mutate(rng, kind, bases[int(rng.integers(len(bases)))], model)
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                codec.decompress(data, model=model)
                outcome = "decoded"
            except FormatError:
                outcome = "format_error"
            except ResourceError:
                outcome = "resource_error"
            except _Hang:
                outcome = "hang"
            except Exception as exc:  # noqa: BLE001 - what the fuzzer is looking for
                outcome = "other_exception"
                failures.append({"input": i, "kind": kind, "error": f"{type(exc).__name__}: {exc}",
                                 "data": data.hex()[:400], "traceback": traceback.format_exc()[-800:]})
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            dt = time.perf_counter() - t0
            slowest = max(slowest, (dt, f"input {i} ({kind}, {outcome})"))
            counts[outcome] += 1
            per_kind[kind][outcome] += 1
    finally:
        signal.signal(signal.SIGALRM, old)
    return {
        "inputs": n_inputs, "seed": seed, "timeout_s": timeout, "counts": counts, "per_kind": per_kind,
        "slowest_s": round(slowest[0], 3), "slowest": slowest[1],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "failures": failures[:20],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per decode before it counts as a hang")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    result = run(args.inputs, args.seed, args.timeout)
    text = json.dumps(result, indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    bad = result["counts"]["other_exception"] + result["counts"]["hang"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
