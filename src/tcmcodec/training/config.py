"""The configuration of a training run: one dataclass, every field a ``tcm train`` flag."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

__all__ = ["TrainConfig", "add_arguments", "config_from_args"]


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
    ema: float = 0.0  # >0: also keep an exponential moving average of the weights, this decay per step (e.g. 0.999)
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
    val_quantile_steps: int = 1000  # aux-loss steps fitting a copy's quantiles before validation (0: none)
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
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.lr <= 0 or self.aux_lr <= 0:
            raise ValueError("learning rates must be positive")
        if not 1.0 <= self.quality_min <= self.quality_max:
            raise ValueError(f"need 1 <= quality_min <= quality_max, got {self.quality_min}, {self.quality_max}")
        if not self.data:
            raise ValueError("no training data given")


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
    """The ``TrainConfig`` of parsed ``add_arguments`` flags (``ValueError`` for invalid values)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
