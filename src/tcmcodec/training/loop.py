"""Train a TCM model: one readable file (config dataclass + argparse, data, loss, loop, checkpoints).

Single process:   tcm train --model tcm-xs --steps 100000 --out runs/xs
Multi-GPU (DDP):  torchrun --nproc_per_node 8 -m tcmcodec.training --model tcm-l --quality-lambda 0.013 ...

Only rank 0 logs and writes files. Every random draw (crops, flips, qualities) is a function of
(seed, rank, step), and checkpoints hold model, both optimizers, scheduler, step and RNG states,
so ``--resume`` continues exactly where the run stopped. SIGTERM / SIGINT save a checkpoint first.
"""

from __future__ import annotations

import argparse
import csv
import io
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

import torch
import torch.distributed as dist

from tcmcodec._fileio import write_atomic
from tcmcodec.training.data import CropDataset, StepSampler, rng_for
from tcmcodec.codec.files import list_images
from tcmcodec.models import TCM, TCMConfig, quality_to_lambda
from tcmcodec.zoo import export_weights, fit_quantiles, get_preset  # noqa: F401 - re-exported



@dataclass
class TrainConfig:
    """Everything a run needs; every field is a command-line flag (``--crop-size`` for ``crop_size``)."""

    # model
    model: str = "tcm-xs"  # preset name
    model_config: str = ""  # JSON overrides of the preset's TCMConfig fields (e.g. tiny test models)
    init_from: str = ""  # start from these weights (safetensors / checkpoint); not a resume
    # data
    data: list[str] = field(default_factory=lambda: ["../shared/data/train"])  # folders or packed .npy crops
    crop_size: int = 256  # side of the square training crops (multiple of 64)
    cache_crops: int = 0  # >0: pre-extract this many crops per image into memory (small machines)
    workers: int = 2  # DataLoader worker processes
    # objective
    loss: str = "mse"  # "mse": lambda*255^2*MSE + bpp; "ms-ssim": lambda*(1 - MS-SSIM) + bpp
    quality_lambda: float = 0.0  # fixed-rate models: the lambda (paper: 0.0025, 0.0035, 0.0067, 0.013, 0.025, 0.05)
    quality_min: float = 1.0  # continuous-rate models: qualities sampled uniformly in [min, max] per batch
    quality_max: float = 8.0  # upper end of the sampled qualities
    # optimization
    steps: int = 100_000  # optimizer steps in total
    batch_size: int = 8  # crops per step and process
    lr: float = 1e-4  # Adam learning rate of the main loss
    aux_lr: float = 1e-3  # Adam learning rate of the auxiliary (quantile) loss
    schedule: str = "multistep"  # "multistep" (paper: x0.1 at 90% of the steps) or "cosine"
    warmup_steps: int = 0  # linear learning-rate warm-up
    clip_grad: float = 1.0  # gradient-norm clipping of the main loss (0: off)
    # hardware
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = 0  # CPU threads (0: torch's default)
    bf16: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    # bookkeeping
    out: str = "runs/tcm"  # output folder: last.pt, log.csv, val.csv, tb/
    resume: bool = False  # continue from OUT/last.pt
    save_every: int = 1000  # checkpoint every K steps (and on SIGTERM / SIGINT)
    log_every: int = 50  # log averages every K steps
    val_every: int = 5000  # 0 disables validation
    val_dir: str = "../shared/data/kodak"  # validation images (real bitstreams)
    val_images: int = 24  # how many of them
    val_qualities: list[float] = field(default_factory=lambda: [1.0, 4.0, 8.0])  # continuous-rate models
    tensorboard: bool = True  # also log to OUT/tb (if tensorboard is installed)
    seed: int = 1234  # every random draw derives from (seed, rank, step)
    max_minutes: float = 0.0  # stop (and save) after this wall time; 0: no limit
    stop_at: int = 0  # stop (and save) at this step, as if killed there; 0: run to --steps

    def __post_init__(self) -> None:
        choices = {"loss": ("mse", "ms-ssim"), "schedule": ("multistep", "cosine")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.crop_size < 64 or self.crop_size % 64:
            raise ValueError(f"crop_size must be a positive multiple of 64, got {self.crop_size}")
        positive = ("steps", "batch_size", "save_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.aux_lr <= 0:
            raise ValueError("learning rates must be positive")
        if not 1.0 <= self.quality_min <= self.quality_max:
            raise ValueError(f"need 1 <= quality_min <= quality_max, got {self.quality_min}, {self.quality_max}")
        if not self.data:
            raise ValueError("no training data given")


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
    """The model a run trains: the preset's architecture with ``cfg.model_config`` overrides."""
    config = get_preset(cfg.model).config
    if cfg.model_config:
        config = TCMConfig.from_dict({**config.to_dict(), **json.loads(cfg.model_config)})
    return TCM(config)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng_states(device: torch.device, ddp: bool) -> list[dict[str, Any]]:
    """Every rank's RNG state (a list indexed by rank); a collective call under DDP."""
    mine = _rng_state(device)
    if not ddp:
        return [mine]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def save_checkpoint(
    path: Path,
    model: TCM,
    opt: torch.optim.Optimizer,
    aux_opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    cfg: TrainConfig,
    rng_states: list[dict[str, Any]],
) -> None:
    """Write a checkpoint atomically; it rebuilds the model alone (``zoo.load_checkpoint``).

    Args:
        path: the file to write.
        model: the (unwrapped) model.
        opt: the main optimizer.
        aux_opt: the optimizer of the auxiliary (quantile) loss.
        sched: the learning-rate scheduler.
        step: optimizer steps done.
        cfg: the run's configuration.
        rng_states: RNG state of every rank (``gather_rng_states``), restored per rank on resume.
    """
    state = {
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "preset": cfg.model,
        "optimizer": opt.state_dict(),
        "aux_optimizer": aux_opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "rng": rng_states,
        "train_config": dataclasses.asdict(cfg),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


# ----------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model: TCM, cfg: TrainConfig) -> list[dict[str, float]]:
    """Real ``.tcm`` files of the validation images: bpp from the file size, PSNR of the decoded image.

    Args:
        model: the model being trained (put back in training mode afterwards).
        cfg: where the images are (``val_dir``, ``val_images``) and which qualities to code.

    Returns:
        One row per quality: ``{"quality", "bpp", "psnr"}`` averaged over the images.
    """
    from tcmcodec.codec import Codec
    from tcmcodec.codec.image import load_image
    from tcmcodec.evaluation.measure import TcmCoder, measure

    files = list_images([cfg.val_dir], recursive=True)[: cfg.val_images]
    qualities = cfg.val_qualities if model.continuous_rate else [None]
    model.eval()
    coder = TcmCoder(Codec(model), check_exact=False)
    images = [load_image(f) for f in files]
    rows = []
    for q in qualities:
        ms = [measure(coder, image, q, ms_ssim=False) for image in images]
        rows.append({"quality": q or 0.0, "bpp": sum(m.bpp for m in ms) / len(ms),
                     "psnr": sum(m.psnr for m in ms) / len(ms)})
    model.train()
    return rows


# ----------------------------------------------------------------------------- main loop
def _setup_distributed(cfg: TrainConfig) -> tuple[bool, int, int, torch.device]:
    """(ddp, rank, world, device); under ``torchrun`` this joins the process group."""
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = 0, 1
    if ddp:
        dist.init_process_group(backend="nccl" if cfg.device.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if cfg.device.startswith("cuda"):
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(cfg.device)
    return ddp, rank, world, torch.device(cfg.device)


class _Logger:
    """Rank 0's CSV / TensorBoard / progress-bar output."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, step: int):
        from tqdm import tqdm

        new_log = not (out_dir / "log.csv").exists()
        self.file = open(out_dir / "log.csv", "a", newline="")
        self.csv = csv.writer(self.file)
        if new_log:
            self.csv.writerow(["step", "loss", "bpp", "mse", "psnr", "lr", "aux_loss", "seconds"])
        (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        self.out_dir = out_dir
        self.writer = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(out_dir / "tb")
            except ImportError:
                pass
        self.bar = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True, disable=not sys.stderr.isatty())

    def train(self, step: int, avg: dict[str, float], lr: float, seconds: float) -> None:
        psnr = 10 * math.log10(1 / max(avg["mse"], 1e-10))
        row = [step, avg["loss"], avg["bpp"], avg["mse"], psnr, lr, avg["aux"], seconds]
        self.csv.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        self.file.flush()
        self.bar.set_postfix(loss=f"{avg['loss']:.3f}", bpp=f"{avg['bpp']:.3f}", psnr=f"{psnr:.2f}")
        if self.bar.disable:
            print(f"step {step} loss {avg['loss']:.4f} bpp {avg['bpp']:.4f} psnr {psnr:.2f} aux {avg['aux']:.1f}", flush=True)
        if self.writer:
            for k, v in avg.items():
                self.writer.add_scalar(f"train/{k}", v, step)

    def val(self, step: int, rows: list[dict[str, float]]) -> None:
        for r in rows:
            print(f"val step {step} q {r['quality']:g}: bpp {r['bpp']:.4f} psnr {r['psnr']:.2f}", flush=True)
            with open(self.out_dir / "val.csv", "a") as f:
                f.write(f"{step},{r['quality']},{r['bpp']:.6f},{r['psnr']:.4f}\n")
            if self.writer:
                self.writer.add_scalar(f"val/bpp_q{r['quality']:g}", r["bpp"], step)
                self.writer.add_scalar(f"val/psnr_q{r['quality']:g}", r["psnr"], step)

    def close(self) -> None:
        self.bar.close()
        self.file.close()
        if self.writer:
            self.writer.close()


def train(cfg: TrainConfig) -> TCM:
    """Run (or resume) training; the last checkpoint is ``OUT/last.pt``.

    Args:
        cfg: the run's configuration.

    Returns:
        The trained model (unwrapped from DDP / compile), on its training device.
    """
    if cfg.val_every and not Path(cfg.val_dir).is_dir():
        raise ValueError(f"validation folder not found: {cfg.val_dir} (or pass --val-every 0)")
    ddp, rank, world, device = _setup_distributed(cfg)
    master, cuda = rank == 0, device.type == "cuda"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    out_dir = Path(cfg.out)
    last = out_dir / "last.pt"
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
    resuming = cfg.resume and last.is_file()

    model = build_model(cfg)
    if cfg.init_from and not resuming:
        from tcmcodec.zoo import load_checkpoint

        model.load_state_dict(load_checkpoint(cfg.init_from).state_dict())
    if not model.continuous_rate and cfg.quality_lambda <= 0:
        raise ValueError("fixed-rate models need --quality-lambda (e.g. 0.013)")
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    aux_names = [n for n, _ in model.named_parameters() if n.endswith("quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n in aux_names]
    main_params = [p for n, p in model.named_parameters() if n not in aux_names]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    step, rng_state = 0, None
    if resuming:
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        aux_opt.load_state_dict(ckpt["aux_optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step = ckpt["step"]
        rng_states = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]  # single-process format
        if len(rng_states) != world:
            raise ValueError(f"checkpoint was written by {len(rng_states)} processes, this run has {world}")
        rng_state = rng_states[rank]
        if master:
            print(f"resumed from {last} at step {step}", flush=True)
    net = model
    if ddp:
        # The factorized prior's quantiles are trained by the auxiliary loss outside DDP's forward:
        # DDP ignores them and their gradients are averaged by hand below.
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, aux_names)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
    if cfg.compile:
        net = torch.compile(net)

    dataset = CropDataset(cfg.data, cfg.crop_size, cfg.seed, cfg.cache_crops)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=StepSampler(cfg.batch_size, rank, world, step),
        num_workers=cfg.workers,
        pin_memory=cuda,
        persistent_workers=cfg.workers > 0,
    )
    stop_requested = {"flag": False}  # set by SIGTERM / SIGINT

    def request_stop(signum, frame):  # noqa: ARG001
        stop_requested["flag"] = True

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    logger = _Logger(cfg, out_dir, step) if master else None
    try:
        start_time = time.time()
        meter: dict[str, float] = {}
        model.train()
        it = iter(loader)  # draws a base seed from torch's RNG: restore the RNG state after it
        if rng_state is not None:
            _set_rng_state(rng_state, device)
        while step < cfg.steps:
            x = next(it).to(device, non_blocking=True).float().div_(255)
            if cuda and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if model.continuous_rate:
                qs = rng_for(cfg.seed, 13, step, rank).uniform(cfg.quality_min, cfg.quality_max, x.shape[0])
                lmbda = torch.tensor([quality_to_lambda(float(v), cfg.loss) for v in qs], device=device)
                q = torch.from_numpy(qs).float().to(device)
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
            stopping = (
                stop_requested["flag"]
                or step == cfg.stop_at
                or bool(cfg.max_minutes and time.time() - start_time > 60 * cfg.max_minutes)
            )
            if ddp:  # every rank must stop at the same step, or the others hang in all-reduce
                flag = torch.tensor([int(stopping)], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stopping = bool(flag.item())
            save = step % cfg.save_every == 0 or step == cfg.steps or stopping
            rng_states = gather_rng_states(device, ddp) if save else None  # collective: every rank
            if master:
                logger.bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps or stopping:
                    n = meter.pop("n")
                    logger.train(step, {k: v / n for k, v in meter.items()}, sched.get_last_lr()[0], time.time() - start_time)
                    meter = {}
                if save:
                    save_checkpoint(last, model, opt, aux_opt, sched, step, cfg, rng_states)
                if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                    logger.val(step, validate(model, cfg))
            if stopping:
                break
    finally:
        if logger:
            logger.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if ddp:
            dist.destroy_process_group()
    return model


# ----------------------------------------------------------------------------- command line
def _field_comments() -> dict[str, str]:
    """The ``# comment`` after each ``TrainConfig`` field, used as its ``--help`` text."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            comments[m.group(1)] = m.group(2).replace("%", "%%")
    return comments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field (``--crop-size`` for ``crop_size``), help from its comment."""
    comments = _field_comments()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{comments.get(f.name, '')} (default: {default})".strip()
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=comments.get(f.name))
        elif isinstance(default, list):
            kind = type(default[0]) if default else str
            parser.add_argument(flag, nargs="+", type=kind, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def main(argv: list[str] | None = None) -> int:
    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, like the rest of the CLI
            self.exit(2, f"{self.prog}: error: {message}\n")

    parser = OneLineParser(prog="tcm train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
