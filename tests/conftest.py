"""Shared pytest fixtures.

Data fixtures point at the shared data folder beside the clone (``../shared``) and FAIL (not skip)
when it is missing, so a CI run without the data cannot pass silently. Set ``TCMCODEC_SHARED_DIR``
to use another location.

Torch runs single-threaded in the tests (``OMP_NUM_THREADS=1`` unless already set): on a small,
shared CPU, multi-threaded small convolutions are up to 100x slower from thread contention.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch

#: The shared data folder next to the repository clone (e.g. /work/shared next to /work/main).
SHARED_DIR = Path(os.environ.get("TCMCODEC_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(
            f"{what} not found at {path}: the tests need the shared data folder beside the clone "
            "(or TCMCODEC_SHARED_DIR)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    """The 24-image Kodak set (``../shared/data/kodak`` relative to the clone); fails when absent."""
    d = SHARED_DIR / "data" / "kodak"
    _require(d / "kodim23.png", "Kodak images")
    return d


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Published Kodak RD curves (CompressAI JSON) in ``../shared/reference/anchors/kodak``; fails when absent."""
    d = SHARED_DIR / "reference" / "anchors" / "kodak"
    _require(d / "vtm.json", "published reference curves")
    return d


@pytest.fixture(scope="session")
def tcm_xs():
    """A randomly initialised ``tcm-xs`` (seed 0), built once per session. Do not modify it."""
    import torch

    from tcmcodec import create_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model("tcm-xs")


@pytest.fixture(scope="session")
def tcm_xs_checkpoint(tcm_xs, tmp_path_factory) -> Path:
    """``tcm_xs`` saved as a ``.safetensors`` checkpoint (float32, config + preset in the metadata)."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("checkpoint") / "tcm-xs-random.safetensors"
    tensors = {k: v.detach().float().contiguous().clone() for k, v in tcm_xs.state_dict().items()}
    meta = {"config": json.dumps(tcm_xs.config.to_dict()), "preset": "tcm-xs"}
    save_file(tensors, str(path), metadata=meta)
    return path
