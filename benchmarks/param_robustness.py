"""How robust is decoding to float noise in the entropy-parameter path? (decode-anywhere issue)

Compresses Kodak images with the default model, then decodes each file with the parameter networks
perturbed: every weight w -> w * (1 + eps * N(0, 1)), for several relative eps, in both parameter
modes:

- ``float64`` (format version 2, the default): the noise is applied to the float64 copy that the
  decoder uses. Re-ordered float64 sums (other thread counts, CPUs, GPUs) differ by ~1e-16
  relative, so eps = 1e-15 models them with margin.
- ``float32`` (format version 1, what the authors' code and CompressAI do): eps = 1e-7 is about
  one float32 rounding, the size of the differences between thread counts.

Each decode ends as ``exact`` (same symbols: the decoded image equals the unperturbed decode to
within float noise, PSNR > 60 dB), ``check`` (the per-slice check value caught a mismatch: a clear
FormatError, version 2 only), ``error`` (another FormatError, e.g. a corrupt-stream error) or
``garbage`` (decoded without error but wrong). Prints one JSON object.

    python benchmarks/param_robustness.py ../shared/data/kodak --max-images 24 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from tcmcodec import codec
from tcmcodec.codec import container as bitstream
from tcmcodec.errors import FormatError
from tcmcodec.codec.image import pad_image, prepare_image
from tcmcodec.models import TCM, ModelStreams
from tcmcodec.models.params import PARAM_MODULES


def _perturbed(model, dtype: torch.dtype, eps: float, seed: int):
    """A copy of ``model`` whose parameter-path modules are in ``dtype`` with relative noise ``eps`` on
    every weight; the rest (entropy bottleneck, transforms) stays float32 as in the codec.

    ``decompress(param_dtype=float64)`` then builds its float64 copy from the perturbed modules.
    (Converting the entropy bottleneck too would be wrong: ``z_hat = symbols + medians`` is rounded
    to float32 in the codec, and a float64 sum differs from it by ~1e-7, on every machine alike.)
    """
    net = TCM(model.config)
    net.load_state_dict(model.state_dict())
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in PARAM_MODULES:
            if hasattr(net, name):
                module = getattr(net, name).to(dtype)
                for p in module.parameters():
                    p.mul_(1 + eps * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return net


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="folder of images (Kodak)")
    ap.add_argument("--max-images", type=int, default=24)
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-15, 1e-12, 1e-9, 1e-7])
    ap.add_argument("--modes", nargs="+", choices=("float64", "float32"), default=["float64", "float32"],
                    help="parameter dtypes to test (float64: format version 2; float32: version 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = codec.Codec("tcm-xs").model
    paths = sorted(args.images.glob("*.png"))[: args.max_images]
    results: dict[str, dict[str, dict[str, int]]] = {}
    for n, path in enumerate(paths):
        rgb, _, _ = prepare_image(path)
        header = bitstream.Header(model="tcm-xs", weights_id=None, quality=args.quality,
                                  height=rgb.shape[0], width=rgb.shape[1])
        x = torch.from_numpy(pad_image(rgb, *header.padded_size, "replicate").copy())
        x = x.permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            for dtype in (getattr(torch, m) for m in args.modes):
                s = model.compress(x, header.quality, param_dtype=dtype)
                ref = model.decompress(s, header.quality, param_dtype=dtype)
                checks = s.checks if dtype == torch.float64 else None  # version 1 files carry none
                coded = ModelStreams(z=s.z, y=s.y, z_shape=s.z_shape, checks=checks)
                for eps in args.eps:
                    net = _perturbed(model, dtype, eps, seed=n)
                    try:
                        out = net.decompress(coded, header.quality, param_dtype=dtype).float()
                        mse = float((out - ref).pow(2).mean())
                        kind = "exact" if mse < 1e-6 else "garbage"
                    except FormatError as exc:
                        kind = "check" if "entropy parameters" in str(exc) else "error"
                    row = results.setdefault(str(dtype).replace("torch.", ""), {}).setdefault(f"{eps:g}", {})
                    row[kind] = row.get(kind, 0) + 1
        print(f"{path.name}: {json.dumps(results)}", file=sys.stderr, flush=True)
    print(json.dumps({"images": len(paths), "quality": args.quality, "threads": args.threads,
                      "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
