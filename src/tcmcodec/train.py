"""Train a TCM model: one readable file (config dataclass + argparse, data, loss, loop, checkpoints).

Single process:   tcm train --model tcm-xs --steps 100000 --out runs/xs
Multi-GPU (DDP):  torchrun --nproc_per_node 8 -m tcmcodec.train --model tcm-l --quality-lambda 0.013 ...

Only rank 0 logs and writes files. Every random draw (crops, flips, qualities) is a function of
(seed, rank, step), and checkpoints hold model, both optimizers, scheduler, step and RNG states,
so ``--resume`` continues exactly where the run stopped. SIGTERM / SIGINT save a checkpoint first.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

from .models import TCM, TCMConfig, quality_to_lambda
from .zoo import get_preset

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
PAPER_LAMBDAS_MSE = (0.0025, 0.0035, 0.0067, 0.013, 0.025, 0.05)


@dataclass
class TrainConfig:
    """Everything a run needs; every field is a command-line flag (``--crop-size`` for ``crop_size``)."""

    # model
    model: str = "tcm-xs"  # preset name
    model_config: str = ""  # JSON overrides of the preset's TCMConfig fields (e.g. tiny test models)
    init_from: str = ""  # start from these weights (safetensors / checkpoint); not a resume
    # data
    data: list[str] = field(default_factory=lambda: ["../shared/data/train"])  # folders or packed .npy crops
    crop_size: int = 256
    cache_crops: int = 0  # >0: pre-extract this many crops per image into memory (small machines)
    workers: int = 2
    # objective
    loss: str = "mse"  # "mse": lambda*255^2*MSE + bpp; "ms-ssim": lambda*(1 - MS-SSIM) + bpp
    quality_lambda: float = 0.0  # fixed-rate models: the lambda (e.g. one of PAPER_LAMBDAS_MSE)
    quality_min: float = 1.0  # continuous-rate models: qualities sampled uniformly in [min, max] per batch
    quality_max: float = 8.0
    # optimization
    steps: int = 100_000
    batch_size: int = 8
    lr: float = 1e-4
    aux_lr: float = 1e-3
    schedule: str = "multistep"  # "multistep" (paper: x0.1 at 90% of the steps) or "cosine"
    warmup_steps: int = 0
    clip_grad: float = 1.0
    # hardware
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = 0  # CPU threads (0: torch's default)
    bf16: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    # bookkeeping
    out: str = "runs/tcm"
    resume: bool = False  # continue from OUT/last.pt
    save_every: int = 1000
    log_every: int = 50
    val_every: int = 5000  # 0 disables validation
    val_dir: str = "../shared/data/kodak"
    val_images: int = 24
    val_qualities: list[float] = field(default_factory=lambda: [1.0, 4.0, 8.0])
    tensorboard: bool = True
    seed: int = 1234
    max_minutes: float = 0.0  # stop (and save) after this wall time; 0: no limit
    stop_at: int = 0  # stop (and save) at this step, as if killed there; 0: run to --steps


# ----------------------------------------------------------------------------- data
def list_images(folders: list[str]) -> list[Path]:
    """All image files under the folders (recursively), sorted for reproducibility."""
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"training data folder not found: {root}")
        files += [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"no images found in {folders}")
    return sorted(files)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size crop with random flips; smaller images are edge-padded first."""
    h, w = img.shape[:2]
    if h < size or w < size:
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
        h, w = img.shape[:2]
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = img[top : top + size, left : left + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    return np.ascontiguousarray(crop)


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class CropDataset(torch.utils.data.Dataset):
    """Random crops addressed by a global sample index, so that sample i is the same crop in every run.

    Args:
        sources: image folders, or ``.npy`` files of packed uint8 crops (N, H, W, 3).
        crop_size: side of the square crops.
        seed: base seed; the crop of sample i depends only on (seed, i).
        cache_crops: when > 0, pre-extract this many crops per image into memory (each at least
            256 px, so that the training crops taken from them still vary).
    """

    def __init__(self, sources: list[str], crop_size: int, seed: int, cache_crops: int = 0):
        self.crop_size, self.seed = crop_size, seed
        packed = [s for s in sources if s.endswith(".npy")]
        folders = [s for s in sources if not s.endswith(".npy")]
        self.bank: np.ndarray | None = None
        if packed:
            self.bank = np.concatenate([np.load(p, mmap_mode="r") for p in packed]) if len(packed) > 1 else np.load(packed[0])
        self.files = list_images(folders) if folders else []
        if cache_crops and self.files:
            crops = [
                _random_crop(_load_rgb(f), max(crop_size, 256), _rng(seed, 7, i, j))
                for i, f in enumerate(self.files)
                for j in range(cache_crops)
            ]
            stack = np.stack(crops)
            self.bank = stack if self.bank is None else np.concatenate([self.bank, stack])
            self.files = []
        if self.bank is not None and self.bank.shape[1] < crop_size:
            raise ValueError(f"packed crops are {self.bank.shape[1]} px, smaller than crop_size {crop_size}")

    def __len__(self) -> int:
        return 1 << 62  # samples are addressed by index; the sampler decides which

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = _rng(self.seed, 11, index)
        if self.bank is not None:
            img = self.bank[rng.integers(len(self.bank))]
        else:
            img = _load_rgb(self.files[rng.integers(len(self.files))])
        crop = _random_crop(np.asarray(img), self.crop_size, rng)
        return torch.from_numpy(crop).permute(2, 0, 1)  # (3, S, S) uint8


class StepSampler(torch.utils.data.Sampler):
    """Yields the global sample indices of rank ``rank`` from step ``start_step`` on."""

    def __init__(self, batch_size: int, rank: int, world: int, start_step: int):
        self.batch_size, self.rank, self.world, self.start = batch_size, rank, world, start_step

    def __iter__(self):
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1


# ----------------------------------------------------------------------------- objective
def rate_distortion_loss(out: dict[str, Any], x: torch.Tensor, lmbda: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """Per-batch loss terms.

    Args:
        out: the model's forward output.
        x: the target images (B, 3, H, W) in [0, 1].
        lmbda: the trade-off per image (B,).
        kind: "mse" or "ms-ssim".

    Returns:
        ``loss``, ``bpp``, ``mse`` (and ``ms_ssim``) as scalars averaged over the batch.
    """
    b, _, h, w = x.shape
    bits = sum(-torch.log2(lik.float()).flatten(1).sum(1) for lik in out["likelihoods"].values())  # (B,)
    bpp = bits / (h * w)
    x_hat = out["x_hat"].float()
    mse = (x_hat - x).pow(2).flatten(1).mean(1)  # (B,)
    terms = {"bpp": bpp.mean(), "mse": mse.mean()}
    if kind == "mse":
        distortion = 255.0**2 * mse
    elif kind == "ms-ssim":
        from pytorch_msssim import ms_ssim

        msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False)  # (B,)
        terms["ms_ssim"] = msssim.mean()
        distortion = 1 - msssim
    else:
        raise ValueError(f"unknown loss {kind!r}")
    terms["loss"] = (lmbda * distortion + bpp).mean()
    return terms


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at a step (warm-up, then multistep or cosine)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))
    return 0.1 if step >= int(0.9 * cfg.steps) else 1.0


# ----------------------------------------------------------------------------- checkpoints
def build_model(cfg: TrainConfig) -> TCM:
    preset = get_preset(cfg.model)
    params = dict(preset.config)
    if cfg.model_config:
        params.update(json.loads(cfg.model_config))
    return TCM(TCMConfig(**params))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(path: Path, model: TCM, opt, aux_opt, sched, step: int, cfg: TrainConfig) -> None:
    """Write a checkpoint atomically; it rebuilds the model alone (``zoo.load_checkpoint``)."""
    state = {
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "preset": cfg.model,
        "optimizer": opt.state_dict(),
        "aux_optimizer": aux_opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "rng": _rng_state(),
        "train_config": dataclasses.asdict(cfg),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit_quantiles(model: TCM, steps: int = 3000, lr: float = 0.1) -> float:
    """Finish fitting the factorized prior's quantiles (the auxiliary loss) with the rest frozen.

    The auxiliary loss converges slowly next to the main loss; short runs end with loose tails,
    which only widens z's coding tables. This touches nothing but ``entropy_bottleneck.quantiles``.

    Args:
        model: the model (modified in place).
        steps: Adam steps on the auxiliary loss.
        lr: their learning rate.

    Returns:
        The final auxiliary loss.
    """
    quantiles = model.entropy_bottleneck.quantiles
    opt = torch.optim.Adam([quantiles], lr=lr)
    for _ in range(steps):
        loss = model.aux_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(model.aux_loss().detach())


def export_weights(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    fp16: bool = True,
    note: dict | None = None,
    quantile_steps: int = 0,
) -> Path:
    """Write a checkpoint's model as (fp16) safetensors with its config and training record as metadata.

    Args:
        checkpoint: a ``tcm train`` checkpoint (``.pt``).
        out: the ``.safetensors`` file to write.
        fp16: store the large tensors as float16 (halves the size; loading upcasts to float32).
            Tensors under 4096 values (biases, norms, gains, the factorized prior) stay float32.
        note: extra metadata (e.g. the training budget), stored as JSON under ``"training"``.
        quantile_steps: when > 0, first run ``fit_quantiles`` for this many steps.
    """
    from safetensors.torch import save_file

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = ckpt["model"]
    if quantile_steps:
        model = TCM(TCMConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(state)
        fit_quantiles(model, quantile_steps)
        state = model.state_dict()
    tensors = {
        k: v.to(torch.float16 if fp16 and v.numel() >= 4096 else torch.float32).contiguous() for k, v in state.items()
    }
    meta = {"config": json.dumps(ckpt["model_config"]), "preset": ckpt.get("preset", ""), "step": str(ckpt["step"])}
    if note:
        meta["training"] = json.dumps(note)
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, out)
    return out


# ----------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model: TCM, cfg: TrainConfig, device: torch.device) -> list[dict[str, float]]:
    """Real bitstreams on the validation images: bpp from the coded bytes, PSNR of the decoded image."""
    files = list_images([cfg.val_dir])[: cfg.val_images]
    qualities = cfg.val_qualities if model.continuous_rate else [None]
    rows = []
    model.eval()
    for q in qualities:
        bpp = psnr = 0.0
        for f in files:
            img = torch.from_numpy(_load_rgb(f)).permute(2, 0, 1)[None].float().div(255).to(device)
            h, w = img.shape[2:]
            ph, pw = -h % 64, -w % 64
            x = F.pad(img, (0, pw, 0, ph), mode="replicate")
            streams = model.compress(x, quality=q)
            x_hat = model.decompress(streams, quality=q)[:, :, :h, :w]
            bpp += 8 * (len(streams.z) + len(streams.y)) / (h * w)
            mse = (x_hat.mul(255).round() - img.mul(255).round()).pow(2).mean().item()
            psnr += 10 * math.log10(255**2 / max(mse, 1e-10))
        rows.append({"quality": q or 0.0, "bpp": bpp / len(files), "psnr": psnr / len(files)})
    model.train()
    return rows


# ----------------------------------------------------------------------------- main loop
def train(cfg: TrainConfig) -> TCM:
    """Run (or resume) training; the last checkpoint is ``OUT/last.pt``.

    Args:
        cfg: the run's configuration.

    Returns:
        The trained model (unwrapped from DDP / compile), on its training device.
    """
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if ddp:
        dist.init_process_group(backend="nccl" if cfg.device.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if cfg.device.startswith("cuda"):
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(cfg.device)
    else:
        rank, world = 0, 1
    master = rank == 0
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    out_dir = Path(cfg.out)
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)

    model = build_model(cfg)
    if cfg.init_from and not cfg.resume:
        from .zoo import load_checkpoint

        model.load_state_dict(load_checkpoint(cfg.init_from).state_dict())
    if not model.continuous_rate and cfg.quality_lambda <= 0:
        raise ValueError("fixed-rate models need --quality-lambda (e.g. 0.013)")
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    step = 0
    last = out_dir / "last.pt"
    if cfg.resume and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        aux_opt.load_state_dict(ckpt["aux_optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step = ckpt["step"]
        if master:
            print(f"resumed from {last} at step {step}", flush=True)
    net = model
    if cfg.compile:
        net = torch.compile(net)
    if ddp:
        # The factorized prior's quantiles are trained by the auxiliary loss outside DDP's forward:
        # DDP ignores them and their gradients are averaged by hand below.
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, _ in model.named_parameters() if n.endswith("quantiles")]
        )
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if cuda else None)

    dataset = CropDataset(cfg.data, cfg.crop_size, cfg.seed, cfg.cache_crops)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=StepSampler(cfg.batch_size, rank, world, step),
        num_workers=cfg.workers,
        pin_memory=cuda,
        persistent_workers=cfg.workers > 0,
    )

    stop = {"flag": False}

    def request_stop(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    log_file = writer = None
    if master:
        new_log = not (out_dir / "log.csv").exists()
        log_file = open(out_dir / "log.csv", "a", newline="")
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "loss", "bpp", "mse", "psnr", "lr", "aux_loss", "seconds"])
        (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(out_dir / "tb")
            except ImportError:
                writer = None
    progress = None
    if master:
        from tqdm import tqdm

        progress = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True, disable=not sys.stderr.isatty())
    start_time = time.time()
    meter: dict[str, float] = {}
    model.train()
    it = iter(loader)  # draws a base seed from torch's RNG: restore the RNG state after it
    if cfg.resume and step:
        torch.set_rng_state(ckpt["rng"]["torch"])
        if cuda and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    while step < cfg.steps and not stop["flag"]:
        x = next(it).to(device, non_blocking=True).float().div_(255)
        if cuda and cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        qrng = _rng(cfg.seed, 13, step, rank)
        if model.continuous_rate:
            q = torch.from_numpy(qrng.uniform(cfg.quality_min, cfg.quality_max, x.shape[0])).float()
            lmbda = torch.tensor([quality_to_lambda(float(v)) for v in q], device=device)
            q = q.to(device)
        else:
            q, lmbda = None, torch.full((x.shape[0],), cfg.quality_lambda, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.bf16):
            out = net(x, q) if q is not None else net(x)
        terms = rate_distortion_loss(out, x, lmbda, cfg.loss)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(main_params, cfg.clip_grad)
        opt.step()
        sched.step()
        aux = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        if ddp:
            for p in aux_params:
                dist.all_reduce(p.grad)
                p.grad /= world
        aux_opt.step()
        step += 1
        for k, v in terms.items():
            meter[k] = meter.get(k, 0.0) + v.item()
        meter["aux"] = meter.get("aux", 0.0) + aux.item()
        meter["n"] = meter.get("n", 0) + 1
        if (cfg.max_minutes and time.time() - start_time > 60 * cfg.max_minutes) or step == cfg.stop_at:
            stop["flag"] = True
        if master:
            progress.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps or stop["flag"]:
                n = meter.pop("n")
                avg = {k: v / n for k, v in meter.items()}
                meter = {}
                psnr = 10 * math.log10(1 / max(avg["mse"], 1e-10))
                row = [step, avg["loss"], avg["bpp"], avg["mse"], psnr, sched.get_last_lr()[0], avg["aux"], time.time() - start_time]
                log.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
                log_file.flush()
                progress.set_postfix(loss=f"{avg['loss']:.3f}", bpp=f"{avg['bpp']:.3f}", psnr=f"{psnr:.2f}")
                if not sys.stderr.isatty():
                    print(f"step {step} loss {avg['loss']:.4f} bpp {avg['bpp']:.4f} psnr {psnr:.2f} aux {avg['aux']:.1f}", flush=True)
                if writer:
                    for k, v in avg.items():
                        writer.add_scalar(f"train/{k}", v, step)
            if step % cfg.save_every == 0 or step == cfg.steps or stop["flag"]:
                save_checkpoint(last, model, opt, aux_opt, sched, step, cfg)
            if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                for r in validate(model, cfg, device):
                    print(f"val step {step} q {r['quality']:g}: bpp {r['bpp']:.4f} psnr {r['psnr']:.2f}", flush=True)
                    with open(out_dir / "val.csv", "a") as f:
                        f.write(f"{step},{r['quality']},{r['bpp']:.6f},{r['psnr']:.4f}\n")
                    if writer:
                        writer.add_scalar(f"val/bpp_q{r['quality']:g}", r["bpp"], step)
                        writer.add_scalar(f"val/psnr_q{r['quality']:g}", r["psnr"], step)
    if master:
        progress.close()
        log_file.close()
        if writer:
            writer.close()
    for s, h in old_handlers.items():
        signal.signal(s, h)
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return model


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, list):
            kind = type(default[0]) if default else str
            parser.add_argument(flag, nargs="+", type=kind, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tcm train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(argv))
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
