"""The authors' published checkpoints: a user cache, download on first use, import of a file.

A fixed-rate preset with :class:`~tcmcodec.zoo.registry.PublishedWeights` (``tcm-s`` qualities 1..6,
``tcm-l`` quality 6) finds its checkpoint in the weights cache, ``$TCMCODEC_CACHE/weights`` (default
``$XDG_CACHE_HOME/tcmcodec/weights``, else ``~/.cache/tcmcodec/weights``). A missing one is downloaded
(with ``gdown``, which passes Google Drive's confirmation page; extra ``download``) into a temporary
file beside its final place, verified, then renamed: the cache never holds a partial file. Verified
means: the recorded SHA-256 when there is one, a strict load into the preset's architecture, and
the parameter count. The SHA-256 of every accepted file is written beside it (``FILE.sha256``) and
checked whenever the file is used again. ``TCMCODEC_OFFLINE=1`` forbids downloads; without network
the error is one line that says where to get the file and how to import it (``tcm weights import``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tcmcodec.errors import WeightsError

from .registry import Preset, PublishedWeights, get_preset, list_models

if TYPE_CHECKING:
    from tcmcodec.models import TCM

__all__ = ["CACHE_ENV", "OFFLINE_ENV", "cache_dir", "cached_path", "fetch_weights", "import_weights",
           "published_presets"]

#: Environment variable that overrides the cache folder (weights go to its ``weights/`` folder).
CACHE_ENV = "TCMCODEC_CACHE"
#: Environment variable that, set to 1 / true / yes, forbids downloads (cached or imported files only).
OFFLINE_ENV = "TCMCODEC_OFFLINE"

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The weights cache folder (not created here)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) / "tcmcodec") if xdg else str(Path.home() / ".cache" / "tcmcodec")
    return Path(root).expanduser() / "weights"


def cached_path(weights: PublishedWeights) -> Path:
    """Where ``weights`` lives in the cache (whether or not it is there)."""
    return cache_dir() / weights.filename


def published_presets() -> list[Preset]:
    """The registered presets that have published checkpoints."""
    return [p for p in map(get_preset, list_models()) if p.published]


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _how_to_get(preset: Preset, weights: PublishedWeights) -> str:
    return (f"download {weights.page or weights.url} in a browser and run: tcm weights import FILE "
            f"--model {preset.name} --quality {weights.quality} (or save it as {cached_path(weights)})")


def _verify(path: Path, preset: Preset, weights: PublishedWeights, digest: str) -> "TCM":
    """Check ``path`` against the record and the architecture; the loaded model, or WeightsError."""
    from tcmcodec.models import TCM

    from .checkpoints import load_checkpoint

    what = f"{preset.name} quality {weights.quality} (lambda {weights.lmbda:g})"
    if weights.sha256 is not None and digest != weights.sha256:
        raise WeightsError(f"{path}: SHA-256 {digest} is not the recorded {weights.sha256} of {what}")
    try:
        model = load_checkpoint(path)
    except ValueError as e:
        raise WeightsError(f"{path} is not a checkpoint of {what}: {e}") from None
    expected = sum(p.numel() for p in TCM(preset.config).parameters())
    found = sum(p.numel() for p in model.parameters())
    if model.config != preset.config or found != expected:
        raise WeightsError(f"{path} is not a checkpoint of {what}: {found:,} parameters of another "
                           f"architecture (expected {expected:,})")
    return model


def _write_checksum(path: Path, digest: str) -> None:
    """Record ``digest`` beside ``path`` (``FILE.sha256``), by an atomic rename."""
    side = _sidecar(path)
    side_tmp = side.with_name(side.name + ".tmp")
    side_tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(side_tmp, side)


def _install_verified(preset: Preset, weights: PublishedWeights, fill: Callable[[Path], None]) -> Path:
    """Put ``weights`` into the cache: ``fill`` writes it into a temporary file beside its place, which is
    verified, then published (checksum first, then the file, each by an atomic rename)."""
    path = cached_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{weights.filename}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        fill(tmp)
        digest = _sha256(tmp)
        _verify(tmp, preset, weights, digest)
        _write_checksum(path, digest)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _reason(exc: BaseException, url: str) -> str:
    """A short reason for a failed download: the innermost network error, not the retry chain."""
    import requests
    from urllib.parse import urlsplit

    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, requests.Timeout):
            return f"{urlsplit(url).hostname} did not answer in time"
        if isinstance(e, requests.ConnectionError):
            return f"no connection to {urlsplit(url).hostname} (offline?)"
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return f"HTTP {e.response.status_code} from {urlsplit(url).hostname}"
    return " ".join((str(exc) or type(exc).__name__).split())[:200]


def _download(preset: Preset, weights: PublishedWeights, dst_tmp: Path, progress: bool) -> None:
    """Download ``weights`` into ``dst_tmp`` with a progress bar on stderr; WeightsError if it fails."""
    try:
        import gdown
        import requests
    except ImportError:
        raise ImportError("downloading the authors' checkpoints needs the 'download' extra: "
                          f"pip install 'tcmcodec[download]'; or {_how_to_get(preset, weights)}") from None
    from tqdm import tqdm

    bar = None

    def on_progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=weights.filename, disable=not progress)
        bar.update(done - bar.n)

    try:
        gdown.download(weights.url, output=str(dst_tmp), quiet=True, use_cookies=False, progress=on_progress,
                       timeout=(15, 60), retries=2)
    except (gdown.exceptions.DownloadError, requests.RequestException, OSError) as e:
        raise WeightsError(f"cannot download {preset.name} quality {weights.quality} (lambda {weights.lmbda:g}): "
                           f"{_reason(e, weights.url)}; {_how_to_get(preset, weights)}") from None
    finally:
        if bar is not None:
            bar.close()


def fetch_weights(preset: Preset, quality: float | None = None, progress: bool = True) -> Path:
    """The cached checkpoint of ``preset`` at ``quality``, downloaded and verified first if missing.

    Args:
        preset: a fixed-rate preset with published checkpoints.
        quality: which one (None: the preset's default quality).
        progress: show the download's progress bar (on stderr).

    Returns:
        The path of the verified file in the cache.

    Raises:
        ValueError: the preset has no published checkpoint at ``quality``.
        WeightsError: not cached and cannot be downloaded (offline, no network), or the file fails
            verification (a cached file whose checksum changed is reported, not silently replaced).
        ImportError: a download is needed and the ``download`` extra is not installed.
    """
    weights = preset.published_weights(quality)
    path = cached_path(weights)
    if path.is_file():
        digest = _sha256(path)
        side = _sidecar(path)
        recorded = (side.read_text().split() or [None])[0] if side.is_file() else None
        expected = weights.sha256 or recorded
        if expected is None:  # put there by hand: verified once, then its checksum is recorded
            _verify(path, preset, weights, digest)
            _write_checksum(path, digest)
        elif digest != expected:
            raise WeightsError(f"{path} changed since it was verified (SHA-256 {digest}, expected {expected}): "
                               "delete it to download it again")
        return path
    if _offline():
        raise WeightsError(f"{preset.name} quality {weights.quality} (lambda {weights.lmbda:g}) is not in the "
                           f"cache and {OFFLINE_ENV} forbids downloads; {_how_to_get(preset, weights)}")
    return _install_verified(preset, weights, lambda tmp: _download(preset, weights, tmp, progress))


def _identify(src: Path, model: str | None, quality: float | None) -> tuple[Preset, PublishedWeights]:
    """Which published checkpoint ``src`` is: by its recorded SHA-256, else by architecture and the
    caller's ``model`` / ``quality``."""
    digest = _sha256(src)
    for preset in published_presets():
        for w in preset.published:
            if w.sha256 == digest:
                return preset, w
    from .checkpoints import load_checkpoint

    loaded = load_checkpoint(src)  # ValueError: not a checkpoint
    candidates = [p for p in published_presets() if p.config == loaded.config]
    if model is not None:
        candidates = [p for p in candidates if p.name == model]
        if not candidates:
            raise ValueError(f"{src} does not have the architecture of {model}, or {model} has no published "
                             f"checkpoints (those that do: {', '.join(p.name for p in published_presets())})")
    if not candidates:
        raise ValueError(f"{src} is not a checkpoint of a preset with published weights "
                         f"({', '.join(p.name for p in published_presets())})")
    preset = candidates[0]
    if quality is None and len(preset.published) > 1:
        choices = ", ".join(f"{w.quality} (lambda {w.lmbda:g})" for w in preset.published)
        raise ValueError(f"{src} is a {preset.name} checkpoint; say which with --quality: {choices}")
    return preset, preset.published_weights(quality if quality is not None else preset.published[0].quality)


def import_weights(src: str | os.PathLike, model: str | None = None, quality: float | None = None) -> Path:
    """Copy a downloaded checkpoint into the cache, verified, so that the preset finds it offline.

    Args:
        src: the file (e.g. the authors' ``.pth.tar`` from their Google Drive).
        model: the preset it belongs to (default: found from its architecture).
        quality: which of the preset's checkpoints it is (required when the preset has several and
            the file's SHA-256 is not recorded).

    Returns:
        The path in the cache.

    Raises:
        ValueError: not a checkpoint of a preset with published weights, or ambiguous.
        WeightsError: it fails verification.
    """
    src = Path(src)
    if not src.is_file():
        raise ValueError(f"{src}: no such file")
    preset, weights = _identify(src, model, quality)
    return _install_verified(preset, weights, lambda tmp: shutil.copyfile(src, tmp))
