"""Shared pytest fixtures.

Data fixtures point at the shared data folder beside the clone (``../shared``) and FAIL (not skip)
when it is missing, so a CI run without the data cannot pass silently. Set ``TCMCODEC_SHARED_DIR``
to use another location.

Optional extras (matplotlib, scipy, imagecodecs, pillow_heif, jsonschema, ...): tests that need one use
the ``require_module`` / ``missing_optional`` fixtures, which skip locally but FAIL when the ``CI``
environment variable is set (``make test`` installs every extra: ``pip install -e .[all]``).

The authors' checkpoints are never downloaded: ``TCMCODEC_OFFLINE=1`` and an empty temporary cache.

Torch runs single-threaded in the tests (``OMP_NUM_THREADS=1`` unless already set): on a small,
shared CPU, multi-threaded small convolutions are up to 100x slower from thread contention.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch
# No test downloads anything: the authors' checkpoints are looked up in an empty cache, offline (the
# download path is tested against a local server in tests/zoo/test_hub.py).
os.environ["TCMCODEC_OFFLINE"] = "1"
_CACHE_ROOT = tempfile.mkdtemp(prefix="tcmcodec-test-cache-")
atexit.register(shutil.rmtree, _CACHE_ROOT, ignore_errors=True)  # one run leaves no folder behind
os.environ["TCMCODEC_CACHE"] = os.path.join(_CACHE_ROOT, "cache")

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
def tcm_reference_dir() -> Path:
    """The TCM reference test vectors (``../shared/reference/tcm``: ``regen.py``, ``N64/``, ``N128/``); fails when absent."""
    d = SHARED_DIR / "reference" / "tcm"
    _require(d / "regen.py", "TCM reference test vectors")
    _require(d / "N64" / "io.npz", "TCM reference test vectors")
    return d


@pytest.fixture(scope="session")
def tcm_regen(tcm_reference_dir) -> ModuleType:
    """The reference folder's ``regen`` module (``reference_state_dict``, ``load_io``), loaded from its file:
    ``sys.path`` and ``sys.modules`` are left as they were."""
    spec = importlib.util.spec_from_file_location("tcm_reference_regen", tcm_reference_dir / "regen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Under CI (``CI`` set to anything but empty / 0 / false / no) missing optional extras fail instead of skipping.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing_optional(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI installs every extra: pip install -e '.[all]')", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def missing_optional() -> Callable[[str], NoReturn]:
    """``missing_optional(reason)``: skip the test locally, fail it under CI."""
    return _missing_optional


@pytest.fixture(scope="session")
def require_module() -> Callable[[str], ModuleType]:
    """``require_module(name)``: the imported module; if it is not installed, skip locally and fail under CI."""

    def require(name: str) -> ModuleType:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            _missing_optional(f"needs {name}: {e}")

    return require


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
