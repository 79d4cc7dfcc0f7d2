"""Training: exact resume, checkpoints that rebuild the model alone, DDP keeps ranks identical."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tcmcodec import zoo
from tcmcodec.training.config import TrainConfig
from tcmcodec.training.loop import train
from tcmcodec.training.loss import lr_factor
from tcmcodec.zoo import export_weights

# A tiny continuous-rate TCM (same code paths as tcm-xs, ~0.1 M parameters) on 64x64 crops.
TINY = dict(
    N=8, M=16, z_channels=8, num_slices=2, max_support_slices=2, depths=(1, 1, 1, 1, 1, 1), head_dims=(8,) * 6,
    hyper_depth=1, hyper_head_dim=8, atten_inter_dim=16, atten_head_dim=8, cc_hidden=(8, 8),
)


def tiny_config(tmp_path: Path, train_dir: Path, **overrides) -> TrainConfig:
    cfg = TrainConfig(
        model="tcm-xs", model_config=json.dumps(TINY), data=[str(train_dir)], crop_size=64, cache_crops=0,
        workers=0, batch_size=2, steps=4, lr=1e-3, threads=1, out=str(tmp_path), save_every=100, log_every=1,
        val_every=0, tensorboard=False, seed=7,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory, kodak_dir) -> Path:
    """A handful of real photos (BSDS500 from ../shared/data/train) in a small folder."""
    shared_train = kodak_dir.parent / "train" / "bsds500"
    files = sorted(shared_train.rglob("*.jpg"))[:6]
    assert files, f"no training photos under {shared_train}"
    d = tmp_path_factory.mktemp("photos")
    for f in files:
        (d / f.name).symlink_to(f)
    return d


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_changes_the_weights_and_writes_logs(tmp_path, train_dir):
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path, train_dir, steps=2)
    model = train(cfg)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,bpp") and len(rows) == 3
    fresh = zoo.get_preset("tcm-xs")  # the checkpoint rebuilds the model alone
    rebuilt = zoo.load_checkpoint(tmp_path / "last.pt")
    assert rebuilt.config == model.config and rebuilt.config != fresh.config
    assert_same(params(rebuilt), params(model))


def test_resumed_run_equals_uninterrupted_run(tmp_path, train_dir):
    straight = params(train(tiny_config(tmp_path / "a", train_dir)))
    train(tiny_config(tmp_path / "b", train_dir, stop_at=2))
    ckpt = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2
    resumed = params(train(tiny_config(tmp_path / "b", train_dir, resume=True)))
    assert_same(straight, resumed)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, train_dir):
    cfg = tiny_config(tmp_path, train_dir, steps=100_000)
    args = [sys.executable, "-m", "tcmcodec.training"]
    for k, v in vars(cfg).items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            args.append(flag if v else "--no-" + k.replace("_", "-"))
        elif isinstance(v, list):
            args += [flag, *map(str, v)]
        else:
            args += [flag, str(v)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = tmp_path / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-2000:]
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert 1 <= ckpt["step"] < 100_000


def test_exported_weights_are_fp16_and_load_through_the_zoo(tmp_path, train_dir):
    cfg = tiny_config(tmp_path, train_dir, steps=1)
    model = train(cfg)
    out = export_weights(tmp_path / "last.pt", tmp_path / "w.safetensors", note={"steps": 1})
    loaded = zoo.load_checkpoint(out)
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().float() if v.numel() >= 4096 else v)
    assert any(v.numel() >= 4096 for v in model.state_dict().values())


def test_fitting_quantiles_lowers_the_aux_loss_and_touches_nothing_else(tmp_path, train_dir):
    from tcmcodec.zoo import fit_quantiles

    model = train(tiny_config(tmp_path, train_dir, steps=1))
    before = params(model)
    aux = float(model.aux_loss().detach())
    assert fit_quantiles(model, steps=300, lr=0.5) < 0.5 * aux
    after = params(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"entropy_bottleneck.quantiles"}


def test_learning_rate_schedules():
    cfg = TrainConfig(steps=100, warmup_steps=10, schedule="cosine")
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(99, cfg) < 0.05
    cfg = TrainConfig(steps=100, schedule="multistep")
    assert lr_factor(89, cfg) == 1.0 and lr_factor(90, cfg) == 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    model = train(cfg)
    torch.save(params(model), Path(out_dir) / f"rank{rank}.pt")


def run_ddp(cfg: TrainConfig, out_dir: Path, world: int = 2, timeout: float = 240.0) -> None:
    """Train ``cfg`` on ``world`` gloo processes (fresh port); fail instead of hanging past ``timeout``."""
    ctx = mp.start_processes(_ddp_worker, args=(world, _free_port(), cfg, str(out_dir)), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.time() + timeout
    while not ctx.join(timeout=1.0):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"DDP run did not finish within {timeout:.0f} s")


def test_ddp_ranks_hold_identical_parameters_after_a_step(tmp_path, train_dir):
    cfg = tiny_config(tmp_path, train_dir, steps=1, device="cpu")
    run_ddp(cfg, tmp_path)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert_same(a, b)
    # ... and the step really moved them away from the (shared) initialization.
    torch.manual_seed(cfg.seed)
    from tcmcodec.training.checkpoint import build_model

    init = params(build_model(cfg))
    assert any(not torch.equal(init[k], a[k]) for k in a)


def test_ddp_resume_equals_uninterrupted_ddp_run(tmp_path, train_dir):
    run_ddp(tiny_config(tmp_path / "a", train_dir, steps=2, device="cpu"), tmp_path / "a")
    run_ddp(tiny_config(tmp_path / "b", train_dir, steps=2, stop_at=1, device="cpu"), tmp_path / "b")
    run_ddp(tiny_config(tmp_path / "b", train_dir, steps=2, resume=True, device="cpu"), tmp_path / "b")
    for rank in (0, 1):
        assert_same(torch.load(tmp_path / "a" / f"rank{rank}.pt", weights_only=True),
                    torch.load(tmp_path / "b" / f"rank{rank}.pt", weights_only=True))


def test_training_works_after_coding_in_the_same_process(tmp_path, train_dir, tcm_xs, kodak_dir):
    from tcmcodec import codec

    codec.Codec(tcm_xs).compress(kodak_dir / "kodim23.png", quality=3)  # runs under inference_mode
    train(tiny_config(tmp_path, train_dir, steps=1))


def test_gain_levels_start_spread_so_quality_changes_the_rate_from_step_zero():
    from tcmcodec import create_model

    model = create_model("tcm-xs")
    q = torch.tensor([1.0, 8.0])
    g = model.gain.vector(q).flatten(1)  # (2, M)
    ig = model.inv_gain.vector(q).flatten(1)
    assert torch.all(g[1] > 4 * g[0])  # finer quantization at the top quality
    torch.testing.assert_close(g * ig, torch.ones_like(g))  # inverse gains undo them at init


def test_validation_writes_real_bitstream_rates_of_the_weights_and_their_average(tmp_path, train_dir):
    cfg = tiny_config(tmp_path, train_dir, steps=1, val_every=1, val_dir=str(train_dir), val_images=1,
                      val_qualities=[2.0, 7.0], ema=0.9)
    train(cfg)
    for name in ("val.csv", "val_ema.csv"):
        rows = [line.split(",") for line in (tmp_path / name).read_text().splitlines()]
        assert [float(r[1]) for r in rows] == [2.0, 7.0]
        assert all(float(r[2]) > 0 and 0 < float(r[3]) < 60 for r in rows), rows  # bpp, PSNR of decoded files


def test_the_weight_average_resumes_exactly_and_is_what_export_writes_with_ema(tmp_path, train_dir):
    straight = train(tiny_config(tmp_path / "a", train_dir, ema=0.5))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    train(tiny_config(tmp_path / "b", train_dir, ema=0.5, stop_at=2))
    train(tiny_config(tmp_path / "b", train_dir, ema=0.5, resume=True))
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["ema"]["n_averaged"] == b["ema"]["n_averaged"] == 4
    assert_same(a["ema"]["model"], b["ema"]["model"])
    raw = params(straight)
    assert any(not torch.equal(a["ema"]["model"][k], raw[k]) for k in raw)  # an average, not the last weights
    out = export_weights(tmp_path / "a" / "last.pt", tmp_path / "ema.safetensors", fp16=False, ema=True)
    assert_same(zoo.load_checkpoint(out).state_dict(), a["ema"]["model"])
    del a["ema"]
    torch.save(a, tmp_path / "no_ema.pt")
    with pytest.raises(ValueError, match="no moving average"):
        export_weights(tmp_path / "no_ema.pt", tmp_path / "x.safetensors", ema=True)


def test_a_model_with_haar_shortcuts_starts_from_weights_without_them_computing_the_same(tmp_path, train_dir):
    from tcmcodec.training.checkpoint import build_model, init_weights
    from tcmcodec.training.loop import setup

    train(tiny_config(tmp_path / "a", train_dir, steps=1))
    plain = export_weights(tmp_path / "a" / "last.pt", tmp_path / "plain.safetensors")
    haar = json.dumps({**TINY, "haar_shortcuts": True})
    model = setup(tiny_config(tmp_path / "b", train_dir, model_config=haar, init_from=str(plain))).model
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.eval()(x, 4.0), zoo.load_checkpoint(plain)(x, 4.0)
    torch.testing.assert_close(ours["x_hat"], theirs["x_hat"])
    other = build_model(tiny_config(tmp_path / "c", train_dir, model_config=json.dumps({**TINY, "N": 16})))
    with pytest.raises(RuntimeError, match="size mismatch"):
        init_weights(other, plain)
