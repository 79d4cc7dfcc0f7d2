"""The architecture candidates of the weights issue (#11, section 1): size, cost and Kodak RD after equal training.

    python benchmarks/arch_study.py info                      # parameters and kMAC/pixel of each candidate
    python benchmarks/arch_study.py command NAME --minutes 18 --steps S --out runs/study/NAME   # the training command
    python benchmarks/arch_study.py eval runs/study/*/last.pt  # Kodak (24 images), forward-pass rate estimate

Every candidate is ``tcm-xs`` with overrides (``TCMConfig`` fields), trained as a fixed-rate model at one
lambda (``LAMBDA``, quality 4's) from scratch on the same crops (same seed), for the same wall time.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch

CANDIDATES = {
    "tcm-xs": {},  # today's shipped architecture
    "cnn2": {"cnn_stages": 2},  # TCM blocks only at H/8 and below, residual blocks at H/2 and H/4
    "haar": {"haar_shortcuts": True},  # AuxT-style Haar linear shortcuts beside g_a / g_s
    "cnn2-haar": {"cnn_stages": 2, "haar_shortcuts": True},
}
LAMBDA = 0.013


def config(name: str):
    from tcmcodec.zoo.registry import get_preset

    return dataclasses.replace(get_preset("tcm-xs").config, num_gains=0, **CANDIDATES[name])


def kmac_per_pixel(model, size: int = 256) -> float:
    """Multiply-accumulates of one forward pass (eval mode), per input pixel, from torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 2 / size**2 / 1e3


def info() -> dict:
    from tcmcodec.models import TCM

    out = {}
    for name in CANDIDATES:
        model = TCM(config(name))
        params = sum(p.numel() for p in model.parameters())
        out[name] = {"overrides": CANDIDATES[name], "parameters": params, "kmac_per_pixel": round(kmac_per_pixel(model), 1)}
    return out


def command(name: str, minutes: float, steps: int, out: str, threads: int) -> str:
    overrides = json.dumps({"num_gains": 0, **CANDIDATES[name]}, separators=(",", ":"))
    return (
        f"python -m tcmcodec.training --model tcm-xs --model-config '{overrides}' --quality-lambda {LAMBDA} "
        "--data ../shared/data/train --crop-size 128 --batch-size 8 --cache-crops 2 --workers 0 --lr 5e-4 "
        f"--schedule cosine --warmup-steps 50 --steps {steps} --threads {threads} --val-every 0 --seed 11 "
        f"--out {out} --max-minutes {minutes}"
    )


def evaluate(paths: list[str]) -> dict:
    """Kodak bpp (forward-pass estimate) and PSNR of each checkpoint; ``loss``: the trained objective
    ``bpp + LAMBDA * 255^2 * MSE`` (lower is better); ``psnr_at_first_bpp``: the PSNR moved to the first
    checkpoint's bpp along the slope that objective implies at its optimum,
    ``dPSNR/dbpp = 10 / ln 10 / (LAMBDA * 255^2 * MSE)``; training pixels and seconds from ``log.csv``."""
    import csv
    import math
    from pathlib import Path

    from tcmcodec.evaluation.evaluate import evaluate as run

    out, first = {}, None
    for path in paths:
        res = run("../shared/data/kodak", model=None, checkpoint=path, estimate=True, progress=False)["results"]
        bpp, psnr = res["bpp"][0], res["psnr-rgb"][0]
        weighted_mse = LAMBDA * 255**2 * 10 ** (-psnr / 10)
        first = first or bpp
        rows = list(csv.DictReader(open(Path(path).parent / "log.csv")))
        step, seconds = int(rows[-1]["step"]), float(rows[-1]["seconds"])
        out[path] = {
            "steps": step, "train_seconds": round(seconds), "train_pixels_per_s": round(step * 8 * 128**2 / seconds),
            "bpp": round(bpp, 4), "psnr-rgb": round(psnr, 3), "loss": round(bpp + weighted_mse, 4),
            "psnr_at_first_bpp": round(psnr + 10 / math.log(10) / weighted_mse * (first - bpp), 3),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("info")
    c = sub.add_parser("command")
    c.add_argument("name", choices=sorted(CANDIDATES))
    c.add_argument("--minutes", type=float, required=True)
    c.add_argument("--steps", type=int, required=True)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", required=True)
    e = sub.add_parser("eval")
    e.add_argument("paths", nargs="+")
    a = p.parse_args()
    if a.what == "command":
        print(command(a.name, a.minutes, a.steps, a.out, a.threads))
        return
    json.dump(info() if a.what == "info" else evaluate(a.paths), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
