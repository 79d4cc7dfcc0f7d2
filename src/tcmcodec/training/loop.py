"""The training loop of ``tcm train`` (nanoGPT-style: plain, readable, DDP via ``torchrun``).

Single process:   tcm train --model tcm-xs --steps 100000 --out runs/xs
Multi-GPU (DDP):  torchrun --nproc_per_node 8 -m tcmcodec.training --model tcm-l --quality-lambda 0.013 ...

Only rank 0 logs and writes files. Every random draw (crops, flips, qualities) is a function of
(seed, rank, step), and checkpoints hold model, both optimizers, scheduler, step and RNG states,
so ``--resume`` continues exactly where the run stopped. SIGTERM / SIGINT save a checkpoint first.
The pieces: :mod:`~tcmcodec.training.config` (flags), :mod:`~tcmcodec.training.loss`,
:mod:`~tcmcodec.training.checkpoint`, :mod:`~tcmcodec.training.data`; this module sets a run up
(:func:`setup`), takes steps (:func:`train_step`) and runs the loop (:func:`train`).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tcmcodec.codec.files import list_images
from tcmcodec.models import TCM, quality_to_lambda

from .checkpoint import (
    build_model, gather_rng_states, init_weights, load_checkpoint_state, save_checkpoint, set_rng_state,
)
from .config import TrainConfig, add_arguments, config_from_args
from .data import CropDataset, StepSampler, rng_for
from .loss import lr_factor, rate_distortion_loss

__all__ = ["Run", "setup", "train_step", "train", "measure_validation", "main"]


# ----------------------------------------------------------------------------- validation
@torch.no_grad()
def measure_validation(model: TCM, cfg: TrainConfig) -> list[dict[str, float]]:
    """Real ``.tcm`` files of the validation images: bpp from the file size, PSNR of the decoded image.

    Args:
        model: the model being trained (not modified: a copy is measured).
        cfg: where the images are (``val_dir``, ``val_images``) and which qualities to code.

    Returns:
        One row per quality: ``{"quality", "bpp", "psnr"}`` averaged over the images.
    """
    from tcmcodec.codec import Codec
    from tcmcodec.codec.image import load_image
    from tcmcodec.evaluation.measure import TcmCoder, measure

    from tcmcodec.zoo import fit_quantiles

    files = list_images([cfg.val_dir], recursive=True)[: cfg.val_images]
    qualities = cfg.val_qualities if model.continuous_rate else [None]
    # The quantiles lag behind the prior during training (the auxiliary loss converges slowly), and
    # stale medians cost ~1.5 dB in real coding (seen in tcm-xs run 2): validate a copy whose
    # quantiles are fitted, as the export does. The model being trained is left untouched.
    snapshot = TCM(model.config).to(next(model.parameters()).device)
    snapshot.load_state_dict(model.state_dict())
    if cfg.val_quantile_steps:
        with torch.enable_grad():
            fit_quantiles(snapshot, cfg.val_quantile_steps)
    coder = TcmCoder(Codec(snapshot.eval()), check_exact=False)
    images = [load_image(f) for f in files]
    rows = []
    for q in qualities:
        ms = [measure(coder, image, q, ms_ssim=False) for image in images]
        rows.append({"quality": q or 0.0, "bpp": sum(m.bpp for m in ms) / len(ms),
                     "psnr": sum(m.psnr for m in ms) / len(ms)})
    return rows


# ----------------------------------------------------------------------------- set-up
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


@dataclass
class Run:
    """A set-up training run: what every step needs.

    Args:
        cfg: the configuration.
        ddp: whether this is one process of a DDP group.
        rank: this process's rank (0 without DDP).
        world: number of processes.
        device: the training device.
        model: the model (unwrapped).
        net: what the forward pass calls (``model`` wrapped by DDP and/or ``torch.compile``).
        opt: the main optimizer (all parameters but the quantiles).
        aux_opt: the optimizer of the auxiliary (quantile) loss.
        sched: the learning-rate schedule of ``opt``.
        step: optimizer steps done so far.
        rng_state: this rank's RNG state to restore once the data loader drew its seed (resume), or None.
        ema: the moving average of the weights (``--ema``), or None.
    """

    cfg: TrainConfig
    ddp: bool
    rank: int
    world: int
    device: torch.device
    model: TCM
    net: Any
    opt: torch.optim.Optimizer
    aux_opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    rng_state: dict[str, Any] | None = None
    ema: AveragedModel | None = None

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def last(self) -> Path:
        return Path(self.cfg.out) / "last.pt"


def setup(cfg: TrainConfig) -> Run:
    """Join the DDP group (under ``torchrun``), build the model and optimizers, resume from ``OUT/last.pt``."""
    if cfg.val_every and not Path(cfg.val_dir).is_dir():
        raise ValueError(f"validation folder not found: {cfg.val_dir} (or pass --val-every 0)")
    ddp, rank, world, device = _setup_distributed(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    last = Path(cfg.out) / "last.pt"
    if rank == 0:
        last.parent.mkdir(parents=True, exist_ok=True)
    resuming = cfg.resume and last.is_file()
    model = build_model(cfg)
    if cfg.init_from and not resuming:
        init_weights(model, cfg.init_from)
    if not model.continuous_rate and cfg.quality_lambda <= 0:
        raise ValueError("fixed-rate models need --quality-lambda (e.g. 0.013)")
    model.to(device)
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    aux_names = [n for n, _ in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if n not in aux_names], lr=cfg.lr)
    aux_opt = torch.optim.Adam([p for n, p in model.named_parameters() if n in aux_names], lr=cfg.aux_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    run = Run(cfg, ddp, rank, world, device, model, model, opt, aux_opt, sched)
    if cfg.ema:
        run.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
    if resuming:
        run.step, run.rng_state = load_checkpoint_state(last, model, opt, aux_opt, sched, rank, world, run.ema)
        if run.master:
            print(f"resumed from {last} at step {run.step}", flush=True)
    if ddp:
        # The factorized prior's quantiles are trained by the auxiliary loss outside DDP's forward:
        # DDP ignores them and their gradients are averaged by hand in train_step.
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, aux_names)
        run.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if cfg.compile:
        run.net = torch.compile(run.net)
    return run


def _loader(run: Run) -> torch.utils.data.DataLoader:
    cfg = run.cfg
    return torch.utils.data.DataLoader(
        CropDataset(cfg.data, cfg.crop_size, cfg.seed, cfg.cache_crops),
        batch_size=cfg.batch_size,
        sampler=StepSampler(cfg.batch_size, run.rank, run.world, run.step),
        num_workers=cfg.workers,
        pin_memory=run.device.type == "cuda",
        persistent_workers=cfg.workers > 0,
    )


# ----------------------------------------------------------------------------- one step
def _qualities(run: Run, batch: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(qualities (B,) or None for fixed-rate models, lambdas (B,)) of this step's batch."""
    cfg, device = run.cfg, run.device
    if not run.model.continuous_rate:
        return None, torch.full((batch,), cfg.quality_lambda, device=device)
    qs = rng_for(cfg.seed, 13, run.step, run.rank).uniform(cfg.quality_min, cfg.quality_max, batch)
    lmbda = torch.tensor([quality_to_lambda(float(v), cfg.loss) for v in qs], device=device)
    return torch.from_numpy(qs).float().to(device), lmbda


def train_step(run: Run, batch: torch.Tensor) -> dict[str, float]:
    """One optimizer step of the main loss and one of the auxiliary loss on a uint8 batch (B, 3, H, W).

    Returns:
        The loss terms (``loss``, ``bpp``, ``mse``, ... and ``aux``) as floats.
    """
    cfg, device, cuda = run.cfg, run.device, run.device.type == "cuda"
    x = batch.to(device, non_blocking=True).float().div_(255)
    if cuda and cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    q, lmbda = _qualities(run, x.shape[0])
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.bf16):
        out = run.net(x, q) if q is not None else run.net(x)
    terms = rate_distortion_loss(out, x, lmbda, cfg.loss)
    run.opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(run.opt.param_groups[0]["params"], cfg.clip_grad)
    run.opt.step()
    run.sched.step()
    aux = run.model.aux_loss()
    run.aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    if run.ddp:
        for p in run.aux_opt.param_groups[0]["params"]:
            dist.all_reduce(p.grad)
            p.grad /= run.world
    run.aux_opt.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    run.step += 1
    return {**{k: v.item() for k, v in terms.items()}, "aux": aux.item()}


def _stopping(run: Run, requested: bool, start_time: float) -> bool:
    """Stop now? (signal, ``--stop-at``, ``--max-minutes``); the same answer on every DDP rank."""
    cfg = run.cfg
    stop = requested or run.step == cfg.stop_at or bool(
        cfg.max_minutes and time.time() - start_time > 60 * cfg.max_minutes)
    if run.ddp:  # every rank must stop at the same step, or the others hang in all-reduce
        flag = torch.tensor([int(stop)], device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


# ----------------------------------------------------------------------------- the loop
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

    def val(self, step: int, rows: list[dict[str, float]], weights: str = "") -> None:
        """Rows of :func:`measure_validation`; ``weights="ema"``: of the moving average (``val_ema.csv``)."""
        name = f"val_{weights}" if weights else "val"
        for r in rows:
            print(f"{name.replace('_', ' ')} step {step} q {r['quality']:g}: bpp {r['bpp']:.4f} psnr {r['psnr']:.2f}",
                  flush=True)
            with open(self.out_dir / f"{name}.csv", "a") as f:
                f.write(f"{step},{r['quality']},{r['bpp']:.6f},{r['psnr']:.4f}\n")
            if self.writer:
                self.writer.add_scalar(f"{name}/bpp_q{r['quality']:g}", r["bpp"], step)
                self.writer.add_scalar(f"{name}/psnr_q{r['quality']:g}", r["psnr"], step)

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
    run = setup(cfg)
    loader = _loader(run)
    stop_requested = {"flag": False}  # set by SIGTERM / SIGINT

    def request_stop(signum, frame):  # noqa: ARG001
        stop_requested["flag"] = True

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    logger = _Logger(cfg, Path(cfg.out), run.step) if run.master else None
    try:
        start_time = time.time()
        meter: dict[str, float] = {}
        run.model.train()
        it = iter(loader)  # draws a base seed from torch's RNG: restore the RNG state after it
        if run.rng_state is not None:
            set_rng_state(run.rng_state, run.device)
        while run.step < cfg.steps:
            for k, v in train_step(run, next(it)).items():
                meter[k] = meter.get(k, 0.0) + v
            meter["n"] = meter.get("n", 0) + 1
            stopping = _stopping(run, stop_requested["flag"], start_time)
            step = run.step
            save = step % cfg.save_every == 0 or step == cfg.steps or stopping
            rng_states = gather_rng_states(run.device, run.ddp) if save else None  # collective: every rank
            if logger is not None:
                logger.bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps or stopping:
                    n = meter.pop("n")
                    logger.train(step, {k: v / n for k, v in meter.items()}, run.sched.get_last_lr()[0],
                                 time.time() - start_time)
                    meter = {}
                if save:
                    save_checkpoint(run.last, run.model, run.opt, run.aux_opt, run.sched, step, cfg, rng_states,
                                    run.ema)
                if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                    logger.val(step, measure_validation(run.model, cfg))
                    if run.ema is not None:
                        logger.val(step, measure_validation(run.ema.module, cfg), "ema")
            if stopping:
                break
    finally:
        if logger:
            logger.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if run.ddp:
            dist.destroy_process_group()
    return run.model


# ----------------------------------------------------------------------------- command line
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
