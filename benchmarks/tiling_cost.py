"""What tiling costs in rate and quality: every image of a folder coded untiled and with forced tilings.

    python benchmarks/tiling_cost.py [--kodak ../shared/data/kodak] [--quality 4] [--tilings 16:4,16:8,32:4]

Each tiling is ``tile:overlap`` in latents (16 px each). Kodak's 768x512 images are untiled by default
(their latent is 48x32, the default tile is 64 latents), so the tilings here are forced and smaller than
the default: a 16-latent (256 px) tile puts 4x more seam per pixel than the default 1024 px tile, so its
cost bounds the default's from above. Rate = z + y stream bytes (the header does not depend on the
tiling, apart from the 4-byte ``tiles`` stream entry); PSNR-RGB of the coded reconstruction, which the
decoder reproduces bit for bit. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kodak", default="../shared/data/kodak")
    p.add_argument("--model", default="tcm-xs")
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--tilings", default="16:4,16:8,32:4", help="tile:overlap in latents, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from tcmcodec import zoo
    from tcmcodec.codec.image import load_image, pad_image
    from tcmcodec.evaluation.metrics import psnr
    from tcmcodec.models.tiling import Tiling

    model = zoo.create_model(args.model, pretrained=True)
    tilings = {"untiled": Tiling()}
    for spec in args.tilings.split(","):
        t, o = (int(v) for v in spec.split(":"))
        tilings[f"tile {16 * t} px, overlap {16 * o} px"] = Tiling(t, o)
    images = sorted(Path(args.kodak).glob("*.png"))[: args.limit or None]
    rows = {name: [] for name in tilings}
    t0 = time.perf_counter()
    for path in images:
        rgb = np.asarray(load_image(path).convert("RGB"))
        h, w = rgb.shape[:2]
        padded = np.ascontiguousarray(pad_image(rgb, -(-h // 64) * 64, -(-w // 64) * 64, "replicate"))
        x = torch.from_numpy(padded).permute(2, 0, 1).unsqueeze(0)
        for name, tiling in tilings.items():
            with torch.inference_mode():
                s = model.compress(x, args.quality if model.continuous_rate else None, return_x_hat=True,
                                   tiling=tiling)
            rec = np.ascontiguousarray(s.x_hat[0, :, :h, :w].permute(1, 2, 0).numpy())
            rows[name].append({"bpp": 8 * (len(s.z) + len(s.y)) / (h * w), "psnr": psnr(rgb, rec)})
        print(f"{path.name}: " + ", ".join(f"{r[-1]['psnr']:.3f}" for r in rows.values()), file=sys.stderr)
    base = rows["untiled"]
    out = {"model": args.model, "quality": args.quality, "images": len(images), "dataset": Path(args.kodak).name,
           "threads": args.threads, "seconds": round(time.perf_counter() - t0, 1), "results": {}}
    for name, r in rows.items():
        bpp, db = np.mean([v["bpp"] for v in r]), np.mean([v["psnr"] for v in r])
        rel = [v["bpp"] / b["bpp"] - 1 for v, b in zip(r, base)]
        ddb = [v["psnr"] - b["psnr"] for v, b in zip(r, base)]
        out["results"][name] = {
            "bpp": round(float(bpp), 5), "psnr": round(float(db), 4),
            "bpp_change_percent": round(100 * float(bpp / np.mean([b["bpp"] for b in base]) - 1), 3),
            "psnr_change_db": round(float(db - np.mean([b["psnr"] for b in base])), 4),
            "worst_image_bpp_change_percent": round(100 * max(rel), 3),
            "worst_image_psnr_change_db": round(min(ddb), 4),
        }
    text = json.dumps(out, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0 if all(math.isfinite(v["psnr"]) for v in out["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
