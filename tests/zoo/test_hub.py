"""The authors' published checkpoints: download (from a local HTTP server, never the internet), verification,
the cache, import, offline use, and coding with a preset that has one checkpoint per quality."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from tcmcodec import WeightsError, codec
from tcmcodec.codec import container as bitstream
from tcmcodec.models import TCM, TCMConfig
from tcmcodec.zoo import hub, registry
from tcmcodec.zoo.registry import Preset, PublishedWeights

TINY = TCMConfig(N=8, M=16, z_channels=8, num_slices=2, max_support_slices=2, depths=(1,) * 6, head_dims=(8,) * 6,
                 hyper_depth=1, hyper_head_dim=8, atten_inter_dim=8, atten_head_dim=8, cc_hidden=(8, 8))
OTHER = TCMConfig(N=8, M=16, z_channels=8, num_slices=2, max_support_slices=2, depths=(1,) * 6, head_dims=(8,) * 6,
                  hyper_depth=1, hyper_head_dim=8, atten_inter_dim=8, atten_head_dim=8, cc_hidden=(16, 8))


def _save(config: TCMConfig, path: Path, seed: int) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TCM(config)
    torch.save({"model": model.state_dict(), "model_config": config.to_dict()}, path)
    return path


class _Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                outer.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Two tiny checkpoints (qualities 1 and 2) and one of another architecture, served on 127.0.0.1;
    an empty cache with downloads allowed."""
    root = tmp_path / "server"
    root.mkdir()
    _save(TINY, root / "q1.pt", 1)
    _save(TINY, root / "q2.pt", 2)
    _save(OTHER, root / "other.pt", 3)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    server = _Server(root)
    yield server, root
    server.close()


def _preset(server: _Server, files=("q1.pt", "q2.pt"), sha256=(None, None), name="tiny-pub") -> Preset:
    published = tuple(PublishedWeights(q, 0.001 * q, server.url(f), f"{name}-q{q}.pt", page=server.url(f), sha256=h)
                      for q, (f, h) in enumerate(zip(files, sha256), 1))
    return Preset(name, TINY, "tiny test preset", default_quality=1, published=published)


def _cache_files() -> list[str]:
    return sorted(p.name for p in hub.cache_dir().iterdir()) if hub.cache_dir().is_dir() else []


def test_a_published_checkpoint_is_downloaded_once_verified_and_recorded(served):
    server, root = served
    preset = _preset(server)
    path = hub.fetch_weights(preset, 2, progress=False)
    assert path == hub.cache_dir() / "tiny-pub-q2.pt"
    assert path.read_bytes() == (root / "q2.pt").read_bytes()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest
    assert _cache_files() == ["tiny-pub-q2.pt", "tiny-pub-q2.pt.sha256"]  # no temporary file left
    n = len(server.requests)
    assert hub.fetch_weights(preset, 2, progress=False) == path
    assert len(server.requests) == n  # the second use is served from the cache


def test_a_download_with_the_wrong_checksum_leaves_nothing_in_the_cache(served):
    server, _ = served
    with pytest.raises(WeightsError, match="SHA-256 .* is not the recorded 0000"):
        hub.fetch_weights(_preset(server, sha256=("0" * 64, None)), 1, progress=False)
    assert _cache_files() == []


def test_a_checkpoint_of_another_architecture_is_rejected(served):
    server, _ = served
    with pytest.raises(WeightsError, match="not a checkpoint of tiny-pub quality 1"):
        hub.fetch_weights(_preset(server, files=("other.pt", "q2.pt")), 1, progress=False)
    assert _cache_files() == []


def test_a_missing_file_on_the_server_is_one_line_saying_how_to_import(served):
    server, _ = served
    with pytest.raises(WeightsError) as info:
        hub.fetch_weights(_preset(server, files=("gone.pt", "q2.pt")), 1, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "HTTP 404" in msg
    assert "tcm weights import FILE --model tiny-pub --quality 1" in msg
    assert _cache_files() == []


def test_a_cached_file_that_changed_is_reported_not_used(served):
    server, _ = served
    preset = _preset(server)
    path = hub.fetch_weights(preset, 1, progress=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="changed since it was verified"):
        hub.fetch_weights(preset, 1, progress=False)


def test_offline_a_missing_checkpoint_is_one_line_and_nothing_is_fetched(served, monkeypatch):
    server, _ = served
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(WeightsError, match="TCMCODEC_OFFLINE forbids downloads.*tcm weights import") as info:
        hub.fetch_weights(_preset(server), 1, progress=False)
    assert "\n" not in str(info.value) and server.requests == []


def test_a_hand_downloaded_file_is_imported_and_used_offline(served, monkeypatch):
    server, root = served
    preset = _preset(server)
    monkeypatch.setitem(registry._REGISTRY, preset.name, preset)
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(ValueError, match="say which with --quality: 1 .*2 "):
        hub.import_weights(root / "q2.pt")
    with pytest.raises(ValueError, match="architecture"):
        hub.import_weights(root / "other.pt", model="tiny-pub", quality=1)
    path = hub.import_weights(root / "q2.pt", quality=2)
    assert path.read_bytes() == (root / "q2.pt").read_bytes()
    assert hub.fetch_weights(preset, 2, progress=False) == path and server.requests == []


def test_a_preset_with_published_checkpoints_codes_each_quality_with_its_own(served, monkeypatch, kodak_dir):
    server, _ = served
    preset = _preset(server)
    monkeypatch.setitem(registry._REGISTRY, preset.name, preset)
    codec.clear_model_cache()
    from tcmcodec.codec.image import load_image

    img = np.ascontiguousarray(np.asarray(load_image(kodak_dir / "kodim23.png"))[:64, :96])
    c = codec.Codec("tiny-pub", quality=2)
    data2, rec2 = c.compress_with_reconstruction(img, 2)
    data1 = c.compress(img)  # None: the checkpoint loaded first (quality 2)
    assert data1 == data2
    header = bitstream.read_header(data2)
    assert (header.model, header.quality) == ("tiny-pub", 2.0)
    data1 = codec.compress(img, "tiny-pub", quality=1)
    assert bitstream.read_header(data1).quality == 1.0 and data1 != data2
    # The decoder finds the checkpoint from the header alone (from the cache: no new request).
    n = len(server.requests)
    assert np.array_equal(np.asarray(codec.decompress(data2)), np.asarray(rec2))
    assert np.array_equal(np.asarray(c.decompress(data1)), np.asarray(codec.decompress(data1)))
    assert len(server.requests) == n
    with pytest.raises(ValueError, match="published checkpoints at quality 1 .*got 3"):
        c.compress(img, 3)
    codec.clear_model_cache()


def test_without_network_compress_with_the_authors_weights_is_one_line(tmp_path, monkeypatch):
    from tcmcodec.cli import main

    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    png = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (10, 200, 30)).save(png)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["compress", str(png), "--model", "tcm-s", "--quality", "3", "-o", str(tmp_path / "a.tcm")])
    lines = err.getvalue().strip().splitlines()
    assert rc == 1 and len(lines) == 1
    assert "tcm-s quality 3 (lambda 0.0067)" in lines[0]
    assert "https://drive.google.com/file/d/17THA1IiPStSO6jG4h5clwkw0ySzgLZID/view" in lines[0]
    assert "tcm weights import FILE --model tcm-s --quality 3" in lines[0]
    assert not (tmp_path / "a.tcm").exists()


def test_every_published_checkpoint_has_a_drive_link_and_a_quality_per_lambda():
    from tcmcodec import zoo

    s, l = zoo.get_preset("tcm-s"), zoo.get_preset("tcm-l")
    assert [(w.quality, w.lmbda) for w in s.published] == list(enumerate((0.0025, 0.0035, 0.0067, 0.013, 0.025, 0.05), 1))
    assert [(w.quality, w.lmbda) for w in l.published] == [(6, 0.05)]
    assert all(w.url.startswith("https://drive.google.com/uc?id=") for w in s.published + l.published)
    assert len({w.filename for w in s.published + l.published}) == 7
    assert json.dumps(zoo.list_models(pretrained=True)) == json.dumps(["tcm-l", "tcm-s", "tcm-xs"])
