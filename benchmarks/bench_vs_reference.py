"""tcmcodec against the authors' TCM, side by side in one process: same weights, image, threads.

    bash ../shared/reference/lic_tcm/setup.sh /tmp/refvenv          # once, ~2 min
    PYTHONPATH=../shared/reference/lic_tcm/stubs:../shared/reference/lic_tcm:src \\
        /tmp/refvenv/bin/python benchmarks/bench_vs_reference.py [--sizes 768x512,1920x1080] [--repeats 3]

Weights: the reference vectors' TCM-S state dict (``../shared/reference/tcm/regen.py``,
``reference_state_dict("N64")``), loaded strictly into both. The authors' side is their model file
(``../shared/reference/lic_tcm/models/tcm.py``, unchanged) with CompressAI's rANS after
``update(force=True)``: ``compress(x)`` / ``decompress(strings, shape)`` on the image padded to a multiple
of 128 (their requirement); the timed decode includes nothing after ``x_hat``. Our side is the whole
codec, image to ``.tcm`` bytes and back (``tcmcodec.codec.Codec`` with the same model: padding to 64,
format version 2 with float64 entropy parameters; ``Codec.compress``, i.e. without the encoder-side
reconstruction that ``tcm compress`` also computes, as the authors' ``compress`` computes none).
Runs alternate (ours, theirs, ours, ...), medians are reported, and ratios are theirs / ours (> 1: we
are faster). Prints one JSON object.

Also timed, to separate the transforms from the precision of the entropy parameters: our model alone
with float32 entropy parameters (``TCM.compress`` / ``decompress`` with ``param_dtype=torch.float32``:
the authors' precision, format version 1, whose files do not decode on every machine), reported as
``ours_f32_*`` and ``speedup_f32_*``. The codec always writes float64 parameters (version 2/3).

``--malloc retain`` makes glibc keep freed memory in the process (``mallopt``: no ``mmap`` for large
blocks, no trimming) for both implementations, so that neither pays page faults after the first runs:
the ratio of computation alone. The default (``--malloc default``) is the allocator every user gets.
Page faults are what the two differ in most: the authors' layers allocate whole-map temporaries, ours
work in chunks and in place; where fresh memory is slow to fault in (a VM whose host reclaims freed
guest pages), the default ratio grows.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def _regen():
    spec = importlib.util.spec_from_file_location("regen", SHARED / "reference" / "tcm" / "regen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image(width: int, height: int):
    sys.path.insert(0, str(HERE))
    from bench_codec import make_image

    return make_image(width, height, SHARED / "data" / "kodak")


class StageClock:
    """Seconds spent in g_a, g_s and the entropy-parameter networks of one or more models (forward hooks):
    the transforms, and the entropy-parameter networks (``tcmcodec.models.params.PARAM_MODULES``:
    hyper-synthesis, SWAtten, cc transforms, LRP, and the float64 copy's ``heads``) together; "other" is the rest of a run (the
    hyper-analysis, the entropy coder, image conversion, container)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def watch(self, stage: str, module: torch.nn.Module) -> None:
        def pre(*_):
            module._stage_t0 = time.perf_counter()

        def post(*_):
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - module._stage_t0

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def watch_model(self, model: torch.nn.Module) -> None:
        """Times ``model.g_a``, ``model.g_s`` and its entropy-parameter networks."""
        self.watch("g_a", model.g_a)
        self.watch("g_s", model.g_s)
        self.watch_params(model)

    def watch_params(self, params: torch.nn.Module) -> None:
        """Times the entropy-parameter networks held by ``params``."""
        from tcmcodec.models.params import PARAM_MODULES

        for name in (*PARAM_MODULES, "heads"):  # heads: the float64 copy's composed first layers
            sub = getattr(params, name, None)  # the authors' model and fixed-rate presets have no gains
            if sub is None:
                continue
            for part in (sub if isinstance(sub, torch.nn.ModuleList) else [sub]):
                for m in (part.children() if name == "heads" else [part]):  # SliceHeads: its layers run
                    self.watch("entropy_parameters", m)


def _retain_freed_memory() -> None:
    """glibc only: serve every allocation from the heap and never hand freed memory back to the kernel."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 2**31 - 1)):
        raise SystemExit("mallopt failed")


def _time(fn, clock: StageClock) -> tuple[float, object, dict[str, float]]:
    clock.seconds = {}
    t0 = time.perf_counter()
    out = fn()
    total = time.perf_counter() - t0
    stages = dict(clock.seconds)
    stages["other"] = total - sum(stages.values())
    return total, out, stages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="768x512,1920x1080")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--malloc", choices=("default", "retain"), default="default",
                   help="glibc's default allocator, or one that keeps freed memory (no page faults after warm-up)")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.malloc == "retain":
        _retain_freed_memory()

    from models import TCM as Official  # the authors' file (PYTHONPATH, see the docstring)

    from tcmcodec import codec
    from tcmcodec.models import TCM
    from tcmcodec.models.params import param_net

    sd = {k: torch.as_tensor(v) for k, v in _regen().reference_state_dict("N64").items()}
    theirs = Official(config=[2] * 6, head_dim=[8, 16, 32, 32, 16, 8], drop_path_rate=0.0, N=64, M=320)
    theirs.load_state_dict(sd)  # their override calls nn.Module.load_state_dict (strict)
    theirs.eval().update(force=True)
    ours = TCM.from_state_dict(sd).eval()
    ours.preset_name = "tcm-s"
    c = codec.Codec(ours)
    clock = StageClock()
    clock.watch_model(theirs)
    # The float64 copy the codec codes with, built before the hooks (a deep copy would copy them).
    clock.watch_params(param_net(ours, torch.float64))
    clock.watch_model(ours)  # its own float32 entropy-parameter networks: the ours_f32 runs

    result = {"threads": args.threads, "repeats": args.repeats, "malloc": args.malloc, "torch": torch.__version__,
              "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "load_average_start": os.getloadavg(),
              "sizes": []}
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        img = _image(w, h)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
        ph, pw = -(-h // 128) * 128, -(-w // 128) * 128
        xp = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        with torch.no_grad():  # warm-up: tables, allocator (not timed)
            c.decompress(c.compress(img.crop((0, 0, 256, 256))))
            small = theirs.compress(xp[:, :, :256, :256])
            theirs.decompress(small["strings"], small["shape"])
        xo = F.pad(x, (0, -(-w // 64) * 64 - w, 0, -(-h // 64) * 64 - h), mode="replicate")  # our padding
        times = {k: [] for k in ("ours_encode", "ours_decode", "theirs_encode", "theirs_decode",
                                 "ours_f32_encode", "ours_f32_decode")}
        stages: dict[str, list[dict[str, float]]] = {k: [] for k in times}

        def run(key, fn):
            t, out, st = _time(fn, clock)
            times[key].append(t)
            stages[key].append(st)
            return out

        for _ in range(args.repeats):
            data = run("ours_encode", lambda: c.compress(img))
            run("ours_decode", lambda: c.decompress(data))
            with torch.no_grad():
                out = run("theirs_encode", lambda: theirs.compress(xp))
                run("theirs_decode", lambda: theirs.decompress(out["strings"], out["shape"]))
                streams = run("ours_f32_encode", lambda: ours.compress(xo, param_dtype=torch.float32))
                run("ours_f32_decode", lambda: ours.decompress(streams, param_dtype=torch.float32))
            print(f"{size}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        result["sizes"].append({
            "size": size, "padded_theirs": f"{pw}x{ph}",
            **{f"{k}_s": round(v, 3) for k, v in med.items()},
            "speedup_encode": round(med["theirs_encode"] / med["ours_encode"], 3),
            "speedup_decode": round(med["theirs_decode"] / med["ours_decode"], 3),
            "speedup_f32_encode": round(med["theirs_encode"] / med["ours_f32_encode"], 3),
            "speedup_f32_decode": round(med["theirs_decode"] / med["ours_f32_decode"], 3),
            "stages_s": {k: {st: round(statistics.median(r[st] for r in v), 3) for st in v[0]}
                         for k, v in stages.items()},
            "bytes_ours": len(data),
            "bytes_theirs": sum(len(s[0]) for s in out["strings"]),
        })
    result["load_average_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
