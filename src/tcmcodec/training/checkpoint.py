"""Training checkpoints: the model a run builds, and exact save / resume (optimizers, scheduler, RNG per rank)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from tcmcodec._fileio import write_atomic
from tcmcodec.models import TCM, TCMConfig
from tcmcodec.zoo import get_preset

from .config import TrainConfig

__all__ = [
    "build_model", "init_weights", "gather_rng_states", "set_rng_state", "save_checkpoint", "load_checkpoint_state",
]


def build_model(cfg: TrainConfig) -> TCM:
    """The model a run trains: the preset's architecture with ``cfg.model_config`` overrides."""
    config = get_preset(cfg.model).config
    if cfg.model_config:
        config = TCMConfig.from_dict({**config.to_dict(), **json.loads(cfg.model_config)})
    return TCM(config)


def init_weights(model: TCM, path: str | Path) -> None:
    """Start ``model`` from the weights at ``path`` (``--init-from``): all of them, strictly; or, when
    ``model`` has Haar shortcuts and the weights do not, everything else, with the shortcut links'
    projections zero so that the model starts computing what the weights' model computes.

    Raises:
        RuntimeError: other missing or unexpected weights (``load_state_dict``'s message).
    """
    from tcmcodec.zoo import load_checkpoint

    state = load_checkpoint(path).state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    links = [k for k in missing if k.startswith(("g_a_links.", "g_s_links."))]
    if unexpected or len(links) != len(missing):
        model.load_state_dict(state)  # strict: raises, naming every mismatch
    if links:
        with torch.no_grad():
            for link in (*model.g_a_links, *model.g_s_links):
                link.proj.weight.zero_()


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
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
    ema: AveragedModel | None = None,
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
        ema: the moving average of the weights (``--ema``), stored as ``"ema": {"model": state dict,
            "n_averaged": updates}``.
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
    if ema is not None:
        state["ema"] = {"model": ema.module.state_dict(), "n_averaged": int(ema.n_averaged)}
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint_state(
    path: Path,
    model: TCM,
    opt: torch.optim.Optimizer,
    aux_opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    rank: int,
    world: int,
    ema: AveragedModel | None = None,
) -> tuple[int, dict[str, Any]]:
    """Restore what :func:`save_checkpoint` wrote into the given objects (``ema``: the moving average;
    one that the checkpoint lacks starts from the restored weights).

    Returns:
        ``(step, rng_state)``: the steps done and this rank's RNG state (restore it with
        :func:`set_rng_state` once the data loader has drawn its seed).

    Raises:
        ValueError: the checkpoint was written by another number of processes.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    aux_opt.load_state_dict(ckpt["aux_optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    if ema is not None and "ema" in ckpt:
        ema.module.load_state_dict(ckpt["ema"]["model"])
        ema.n_averaged.fill_(ckpt["ema"]["n_averaged"])
    rng_states = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]  # single-process format
    if len(rng_states) != world:
        raise ValueError(f"checkpoint was written by {len(rng_states)} processes, this run has {world}")
    return ckpt["step"], rng_states[rank]
