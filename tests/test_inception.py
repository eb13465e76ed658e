"""Inception weights for FID: one fast line when they are missing or corrupt (never a hang on the network), the
cache and MASKGIT_INCEPTION/--inception lookups, checked downloads, loading both formats, and the real network
where its weights file is present."""

from __future__ import annotations

import time

import pytest
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation import fid, inception


@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_missing_weights_is_one_fast_line(cli, image_sets, no_weights, mode):
    spec = inception.INCEPTION_FILES[mode]
    start = time.perf_counter()
    r = cli("fid", image_sets / "a", image_sets / "b", "--mode", mode, "--device", "cpu")
    elapsed = time.perf_counter() - start
    assert r.exit_code == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Inception weights for --mode")
    assert spec.filename in lines[0] and str(spec.cache_path()) in lines[0] and "--inception" in lines[0]
    assert (spec.sha256 or "sha256 unknown") in lines[0] and "no network" in lines[0]
    assert elapsed < 1.0, f"took {elapsed:.2f}s"


def test_no_download_env_never_touches_the_network(cli, image_sets, no_weights, monkeypatch):
    monkeypatch.setenv("MASKGIT_NO_DOWNLOAD", "1")
    r = cli("fid", image_sets / "a", image_sets / "b", "--mode", "legacy_pytorch")
    assert r.exit_code == 1 and "MASKGIT_NO_DOWNLOAD=1" in r.stderr
    assert no_weights == []
    assert inception.inception_available("clean") is None


def test_explicit_weights_path_must_exist(cli, image_sets, no_weights, tmp_path, monkeypatch):
    r = cli("fid", image_sets / "a", image_sets / "b", "--inception", tmp_path / "missing.pt")
    assert r.exit_code == 1 and "--inception" in r.stderr and "no such file" in r.stderr
    monkeypatch.setenv("MASKGIT_INCEPTION", str(tmp_path / "missing.pt"))
    r = cli("fid", image_sets / "a", image_sets / "b")
    assert r.exit_code == 1 and "MASKGIT_INCEPTION" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_corrupt_weights_file_is_one_line(cli, image_sets, no_weights, tmp_path, mode):
    bad = tmp_path / "inception.bin"
    bad.write_bytes(b"\x00garbage" * 1000)
    r = cli("fid", image_sets / "a", image_sets / "b", "--mode", mode, "--inception", bad, "--device", "cpu")
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "wrong or corrupt" in lines[0]
    assert inception.INCEPTION_FILES[mode].filename in lines[0]


def test_weights_found_in_the_cache(no_weights, tmp_path):
    path = inception.INCEPTION_FILES["legacy_pytorch"].cache_path()
    assert path == tmp_path / "torch-home" / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert inception.resolve_inception("legacy_pytorch") == path
    assert inception.inception_available("legacy_pytorch") == path


# ------------------------------------------------------------------------------------------------------
# the real network, only where its weights file is present


def _real_weights(mode):
    import os

    old = os.environ.get("MASKGIT_NO_DOWNLOAD")
    os.environ["MASKGIT_NO_DOWNLOAD"] = "1"
    try:
        return inception.inception_available(mode)
    finally:
        if old is None:
            del os.environ["MASKGIT_NO_DOWNLOAD"]
        else:
            os.environ["MASKGIT_NO_DOWNLOAD"] = old


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_real_inception(mode, image_sets):
    weights = _real_weights(mode)
    if weights is None:
        pytest.skip(f"{inception.INCEPTION_FILES[mode].filename} is not on this machine")
    same = fid.compute_fid(image_sets / "a", image_sets / "a", mode=mode, num_workers=0, batch_size=8)
    other = fid.compute_fid(image_sets / "a", image_sets / "b", mode=mode, num_workers=0, batch_size=8, kid=True)
    assert same["feature_dim"] == 2048 and same["weights"] == str(weights)
    assert same["fid"] < 1e-3 < other["fid"]
    assert other["comparable_to_lab"] is (mode == "legacy_pytorch")


# ------------------------------------------------------------------------------------------------------
# loading and downloading weights files, with stand-in networks of the right format


def test_download_goes_to_the_cache_and_is_checked(no_weights, monkeypatch):
    import io
    import urllib.request

    monkeypatch.setattr(inception, "_network_ok", lambda url, timeout=1.0: True)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"weights"))
    path = inception.resolve_inception("clean")
    assert path == inception.INCEPTION_FILES["clean"].cache_path() and path.read_bytes() == b"weights"
    with pytest.raises(MaskgitError, match="sha256 is not 6726825d"):
        inception.resolve_inception("legacy_pytorch")
    assert not inception.INCEPTION_FILES["legacy_pytorch"].cache_path().exists()


def test_legacy_weights_load_into_pytorch_fid_network(no_weights, tmp_path, monkeypatch):
    import dataclasses

    import cleanfid.inception_pytorch as ip

    # a randomly initialised pytorch-fid Inception (as cleanfid.inception_pytorch.fid_inception_v3 builds it)
    net = ip._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, cls, kwargs in [
        ("Mixed_5b", ip.FIDInceptionA, (192, 32)),
        ("Mixed_5c", ip.FIDInceptionA, (256, 64)),
        ("Mixed_5d", ip.FIDInceptionA, (288, 64)),
        ("Mixed_6b", ip.FIDInceptionC, (768, 128)),
        ("Mixed_6c", ip.FIDInceptionC, (768, 160)),
        ("Mixed_6d", ip.FIDInceptionC, (768, 160)),
        ("Mixed_6e", ip.FIDInceptionC, (768, 192)),
        ("Mixed_7b", ip.FIDInceptionE_1, (1280,)),
        ("Mixed_7c", ip.FIDInceptionE_2, (2048,)),
    ]:
        setattr(net, name, cls(*kwargs))
    weights = tmp_path / "random_pt_inception.pth"
    torch.save(net.state_dict(), weights)
    spec = inception.INCEPTION_FILES["legacy_pytorch"]
    monkeypatch.setitem(inception.INCEPTION_FILES, "legacy_pytorch", dataclasses.replace(spec, sha256=None, size=None))
    fn = inception.load_inception("legacy_pytorch", weights, "cpu")
    with torch.no_grad():
        out = fn(torch.rand(2, 3, 299, 299) * 255)
    assert out.shape == (2, 2048)


def test_clean_weights_any_file_name(tmp_path):
    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2048, 1)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(self.conv(x))

    class Base(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, x, return_features: bool = False):
            return self.layers(x)

    import warnings

    path = tmp_path / "my-inception.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(Base()).save(str(path))
    fn = inception.load_inception("clean", path, "cpu")
    with torch.no_grad():
        assert fn(torch.rand(2, 3, 299, 299) * 255).shape == (2, 2048)
