"""The TCM implementation computes the authors' function: stage-by-stage comparison with the reference
test vectors in ../shared/reference/tcm (teacher forcing, as its README describes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcmcodec import TCM, TCMConfig

TOLERANCE = 1e-4  # max abs error / max abs value, at every stage
REFERENCE_PARAMETERS = {"N64": 45_180_752, "N128": 76_568_148}


@pytest.fixture(scope="module", params=["N64", "N128"])
def reference(request, tcm_regen):
    config = request.param
    state_dict = tcm_regen.reference_state_dict(config)
    model = TCM.from_state_dict(state_dict)
    io = {k: torch.from_numpy(v) for k, v in tcm_regen.load_io(config).items()}
    return config, model, io, state_dict


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def test_presets_have_the_reference_parameter_counts():
    counts = {N: sum(p.numel() for p in TCM(TCMConfig(N=N)).parameters()) for N in (64, 96, 128)}
    assert counts == {64: 45_180_752, 96: 59_133_650, 128: 76_568_148}


def test_official_state_dict_loads_strictly_and_infers_n(reference):
    config, model, _, state_dict = reference
    assert model.config.N == {"N64": 64, "N128": 128}[config]
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMETERS[config]
    # A plain strict load_state_dict of every official key (coding buffers included) works too.
    fresh = TCM(model.config)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)


def test_from_state_dict_accepts_checkpoint_dicts_with_module_prefix(reference, tmp_path):
    _, model, _, state_dict = reference
    wrapped = {"epoch": 3, "state_dict": {"module." + k: torch.from_numpy(v) for k, v in state_dict.items()}}
    path = tmp_path / "checkpoint_best_loss.pth.tar"
    torch.save(wrapped, path)
    loaded = TCM.from_state_dict(path)
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), k


@torch.no_grad()
def test_every_stage_matches_the_reference_with_teacher_forcing(reference):
    config, model, io, _ = reference
    errors: dict[str, float] = {}
    x = io["x_uint8"].permute(2, 0, 1)[None].float() / 255
    errors["g_a"] = rel_error(model.g_a(x), io["y"])
    errors["h_a"] = rel_error(model.h_a(io["y"]), io["z"])
    medians = model.entropy_bottleneck.medians()
    errors["z_medians"] = rel_error(medians, io["z_medians"])
    z_hat = io["z_symbols"] + io["z_medians"][None, :, None, None]
    latent_means, latent_scales = model.h_mean_s(z_hat), model.h_scale_s(z_hat)
    errors["h_mean_s"] = rel_error(latent_means, io["latent_means"])
    errors["h_scale_s"] = rel_error(latent_scales, io["latent_scales"])
    latent_means, latent_scales = io["latent_means"], io["latent_scales"]
    sd = model.slice_dim
    done: list[torch.Tensor] = []
    for i in range(model.config.num_slices):
        part = slice(sd * i, sd * (i + 1))
        mu, scale, mean_support = model._slice_params(i, latent_means, latent_scales, done)
        errors[f"means[{i}]"] = rel_error(mu, io["means"][:, part])
        errors[f"scales[{i}]"] = rel_error(scale, io["scales"][:, part])
        y_hat = model._lrp(i, mean_support, io["y_symbols"][:, part].float() + io["means"][:, part])
        errors[f"lrp[{i}]"] = rel_error(y_hat, io["y_hat"][:, part])
        done.append(io["y_hat"][:, part])
    errors["g_s"] = rel_error(model.g_s(io["y_hat"]), io["x_hat_forward"])
    worst = max(errors, key=errors.get)
    print(f"\n{config}: worst stage {worst} rel. error {errors[worst]:.2e}")
    assert errors[worst] <= TOLERANCE, errors


@torch.no_grad()
def test_end_to_end_symbols_agree_with_the_reference(reference):
    _, model, io, _ = reference
    x = io["x_uint8"].permute(2, 0, 1)[None].float() / 255
    y = model.g_a(x)
    z = model.h_a(y)
    z_symbols, _ = model.entropy_bottleneck.compress(z)
    assert np.mean(z_symbols == io["z_symbols"].numpy()) >= 0.999
    # The first slice depends only on y and z.
    mu, _, _ = model._slice_params(0, io["latent_means"], io["latent_scales"], [])
    first = torch.round(y[:, : model.slice_dim] - mu)
    assert (first == io["y_symbols"][:, : model.slice_dim]).float().mean() >= 0.999


@torch.no_grad()
def test_eval_forward_likelihoods_match_the_reference(reference):
    _, model, io, _ = reference
    z_hat = io["z_symbols"] + io["z_medians"][None, :, None, None]
    assert rel_error(model.entropy_bottleneck.likelihood(z_hat), io["z_likelihoods"]) <= TOLERANCE
    lik = model.gaussian_conditional.likelihood(io["y_symbols"].float(), io["scales"])
    assert rel_error(lik, io["y_likelihoods"]) <= TOLERANCE
