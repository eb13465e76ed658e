"""`maskgit fid` / `fid-stats` offline: a small fixed feature extractor stands in for Inception (REFERENCE §3)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.data import lab_csv
from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation import fid, inception, references

from .conftest import make_images


class TinyExtractor:
    """Deterministic stand-in for Inception: fixed random conv on the 299x299 input, mean and max pooled (8-d)."""

    name = "test-tiny-conv"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.weight = torch.randn(4, 3, 13, 13, generator=g) / 13
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 299, 299) and float(x.max()) <= 255.0
        self.calls += 1
        y = torch.relu(torch.nn.functional.conv2d(x / 127.5 - 1, self.weight, stride=13))
        return torch.cat([y.mean((2, 3)), y.amax((2, 3))], dim=1)


@pytest.fixture
def extractor(monkeypatch):
    ext = TinyExtractor()
    monkeypatch.setattr(fid, "FEATURE_EXTRACTOR_OVERRIDE", ext)
    return ext


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    make_images(root / "a", 16, seed=1)
    make_images(root / "b", 16, seed=2)
    return root


def write_csv(path, folder, header=True):
    files = sorted(folder.iterdir())
    with open(path, "w") as f:
        if header:
            f.write(",".join(str(i) for i in range(64 * 64 * 3)) + "\n")
        for p in files:
            f.write(",".join(str(v) for v in np.asarray(Image.open(p).convert("RGB")).reshape(-1)) + "\n")
    return path


def run_json(cli, *args):
    r = cli(*args, "--json", "--device", "cpu", "--workers", "0")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ------------------------------------------------------------------------------------------------------
# the command, offline


def test_fid_self_is_zero_and_other_set_is_positive(cli, extractor, sets):
    same = run_json(cli, "fid", sets / "a", sets / "a")
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    other = run_json(cli, "fid", sets / "a", sets / "b")
    assert other["fid"] > 1e-3
    assert other["mode"] == "clean" and other["pred_count"] == 16 and other["ref_count"] == 16
    assert other["ref_kind"] == "folder" and other["image_size"] == [64, 64]
    assert other["feature_extractor"] == "test-tiny-conv" and other["feature_dim"] == 8
    assert other["weights"] == "custom extractor" and other["comparable_to_lab"] is False
    assert other["warnings"] == [] and "kid" not in other


def test_folder_npz_and_csv_references_agree(cli, extractor, sets, tmp_path):
    by_folder = run_json(cli, "fid", sets / "a", sets / "b", "--kid")
    stats = run_json(cli, "fid-stats", sets / "b", "-o", tmp_path / "b.npz")
    assert stats["count"] == 16 and stats["mode"] == "clean" and stats["features_saved"]
    by_npz = run_json(cli, "fid", sets / "a", tmp_path / "b.npz", "--kid")
    by_csv = run_json(cli, "fid", sets / "a", write_csv(tmp_path / "test_gt.csv", sets / "b"), "--kid")
    assert by_npz["ref_kind"] == "npz" and by_csv["ref_kind"] == "csv" and by_csv["ref_count"] == 16
    assert by_npz["fid"] == pytest.approx(by_folder["fid"], rel=1e-9)
    assert by_csv["fid"] == pytest.approx(by_folder["fid"], rel=1e-9)
    assert by_npz["kid"] == pytest.approx(by_folder["kid"], rel=1e-9) == pytest.approx(by_csv["kid"], rel=1e-9)


def test_kid_is_repeatable_and_lower_for_the_same_set(extractor, sets):
    # (unbiased KID of 16 images can be negative; only the order and the repeatability are checked)
    same = fid.compute_fid(sets / "a", sets / "a", kid=True, num_workers=0)
    other = fid.compute_fid(sets / "a", sets / "b", kid=True, num_workers=0)
    again = fid.compute_fid(sets / "a", sets / "b", kid=True, num_workers=0)
    assert same["kid"] < other["kid"]
    assert other["kid"] == again["kid"]


def test_text_output_and_in_memory_pred(cli, extractor, sets):
    r = cli("fid", sets / "a", sets / "b", "--kid", "--device", "cpu", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("FID ") and "mode clean" in r.stdout and "KID " in r.stdout
    arr = np.stack([np.asarray(Image.open(p)) for p in sorted((sets / "a").iterdir())])
    from_memory = fid.compute_fid(arr, sets / "b", num_workers=0)
    from_folder = fid.compute_fid(sets / "a", sets / "b", num_workers=0)
    assert from_memory["fid"] == pytest.approx(from_folder["fid"], rel=1e-9)


def test_stats_without_features_rejects_kid(cli, extractor, sets, tmp_path):
    assert cli("fid-stats", sets / "b", "-o", tmp_path / "s.npz", "--no-features", "--device", "cpu").exit_code == 0
    r = cli("fid", sets / "a", tmp_path / "s.npz", "--kid", "--device", "cpu")
    assert r.exit_code == 1 and "no features" in r.stderr and "KID" in r.stderr


def test_stats_of_another_mode_or_extractor_are_refused(cli, extractor, sets, tmp_path, monkeypatch):
    assert cli("fid-stats", sets / "b", "-o", tmp_path / "s.npz", "--device", "cpu").exit_code == 0
    r = cli("fid", sets / "a", tmp_path / "s.npz", "--mode", "legacy_pytorch", "--device", "cpu")
    assert r.exit_code == 1 and "not comparable" in r.stderr and "--mode clean" in r.stderr
    other = TinyExtractor()
    other.name = "another"
    monkeypatch.setattr(fid, "FEATURE_EXTRACTOR_OVERRIDE", other)
    r = cli("fid", sets / "a", tmp_path / "s.npz", "--device", "cpu")
    assert r.exit_code == 1 and "test-tiny-conv" in r.stderr


def test_foreign_npz_with_only_mu_sigma_is_accepted_with_a_warning(extractor, sets, tmp_path):
    feats = fid.extract_features(references.scan_folder(sets / "b"), extractor, num_workers=0)
    mu, sigma = np.mean(feats, axis=0), np.cov(feats, rowvar=False)
    np.savez(tmp_path / "pytorch_fid_stats.npz", mu=mu, sigma=sigma)
    r = fid.compute_fid(sets / "a", tmp_path / "pytorch_fid_stats.npz", num_workers=0)
    assert r["fid"] == pytest.approx(fid.compute_fid(sets / "a", sets / "b", num_workers=0)["fid"], rel=1e-9)
    assert r["ref_count"] is None and any("does not say its mode" in w for w in r["warnings"])


# ------------------------------------------------------------------------------------------------------
# input errors


def test_count_mismatch_is_a_warning(cli, extractor, sets, tmp_path):
    make_images(tmp_path / "few", 5, seed=3)
    r = run_json(cli, "fid", tmp_path / "few", sets / "b")
    assert r["pred_count"] == 5 and r["ref_count"] == 16
    assert len(r["warnings"]) == 1 and "5 images" in r["warnings"][0] and "16" in r["warnings"][0]


def test_size_mismatch_and_mixed_sizes(cli, extractor, sets, tmp_path):
    make_images(tmp_path / "small", 4, size=32)
    r = cli("fid", tmp_path / "small", sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "size mismatch" in r.stderr and "32x32" in r.stderr and "64x64" in r.stderr
    make_images(tmp_path / "mixed", 3)
    make_images(tmp_path / "mixed", 1, size=32, prefix="z_")
    r = cli("fid", tmp_path / "mixed", sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "z_000.png" in r.stderr and "one size" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_empty_missing_and_unreadable(cli, extractor, sets, tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("fid", tmp_path / "empty", sets / "b")
    assert r.exit_code == 1 and "contains no images" in r.stderr
    r = cli("fid", sets / "a", tmp_path / "nope")
    assert r.exit_code == 1 and "no such file or folder" in r.stderr
    make_images(tmp_path / "bad", 3)
    (tmp_path / "bad" / "image_001.png").write_bytes(b"not a png")
    r = cli("fid", tmp_path / "bad", sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "image_001.png" in r.stderr and "not a readable image" in r.stderr
    (tmp_path / "ref.txt").write_text("hello")
    r = cli("fid", sets / "a", tmp_path / "ref.txt")
    assert r.exit_code == 1 and "expected a folder of images" in r.stderr


def test_truncated_image_is_named(extractor, sets, tmp_path):
    make_images(tmp_path / "trunc", 3)
    p = tmp_path / "trunc" / "image_002.png"
    p.write_bytes(p.read_bytes()[:200])  # header fine, pixel data cut
    with pytest.raises(MaskgitError, match="image_002.png"):
        fid.compute_fid(tmp_path / "trunc", sets / "b", num_workers=0)


def test_csv_errors(tmp_path):
    good = ",".join(["7"] * 12288)
    cases = {
        "short": (f"h\n{good}\n{','.join(['7'] * 12000)}\n", "data row 2 (line 3) has 12000 values, expected 12288"),
        "notsquare": ("h\n1,2,3,4\n", "not H*W*3"),
        "text": (f"h\n{good}\n{good}x\n", "data row 2 (line 3), value 12288 is '7x', not a number"),
        "range": (f"h\n{good.replace('7', '300', 1)}\n", "value 1 is 300, outside 0-255"),
        "empty": ("", "empty csv"),
        "header_only": ("a,b,c\n", "no image rows"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(MaskgitError, match=re.escape(message)) as e:
            lab_csv.load_csv_images(path)
        assert str(path) in str(e.value)
    (tmp_path / "ok.csv").write_text(f"h\n{good}\n\n{good}\n")
    arr = lab_csv.load_csv_images(tmp_path / "ok.csv")
    assert arr.shape == (2, 64, 64, 3) and arr.dtype == np.uint8 and (arr == 7).all()


def test_csv_is_hwc_order(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (tmp_path / "gt.csv").write_text("header\n" + ",".join(map(str, img.reshape(-1))) + "\n")
    np.testing.assert_array_equal(lab_csv.load_csv_images(tmp_path / "gt.csv")[0], img)


# ------------------------------------------------------------------------------------------------------
# Inception weights


@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_missing_weights_is_one_fast_line(cli, sets, no_weights, mode):
    spec = inception.INCEPTION_FILES[mode]
    start = time.perf_counter()
    r = cli("fid", sets / "a", sets / "b", "--mode", mode, "--device", "cpu")
    elapsed = time.perf_counter() - start
    assert r.exit_code == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Inception weights for --mode")
    assert spec.filename in lines[0] and str(spec.cache_path()) in lines[0] and "--inception" in lines[0]
    assert (spec.sha256 or "sha256 unknown") in lines[0] and "no network" in lines[0]
    assert elapsed < 1.0, f"took {elapsed:.2f}s"


def test_no_download_env_never_touches_the_network(cli, sets, no_weights, monkeypatch):
    monkeypatch.setenv("MASKGIT_NO_DOWNLOAD", "1")
    r = cli("fid", sets / "a", sets / "b", "--mode", "legacy_pytorch")
    assert r.exit_code == 1 and "MASKGIT_NO_DOWNLOAD=1" in r.stderr
    assert no_weights == []
    assert inception.inception_available("clean") is None


def test_explicit_weights_path_must_exist(cli, sets, no_weights, tmp_path, monkeypatch):
    r = cli("fid", sets / "a", sets / "b", "--inception", tmp_path / "missing.pt")
    assert r.exit_code == 1 and "--inception" in r.stderr and "no such file" in r.stderr
    monkeypatch.setenv("MASKGIT_INCEPTION", str(tmp_path / "missing.pt"))
    r = cli("fid", sets / "a", sets / "b")
    assert r.exit_code == 1 and "MASKGIT_INCEPTION" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", ["clean", "legacy_pytorch"])
def test_corrupt_weights_file_is_one_line(cli, sets, no_weights, tmp_path, mode):
    bad = tmp_path / "inception.bin"
    bad.write_bytes(b"\x00garbage" * 1000)
    r = cli("fid", sets / "a", sets / "b", "--mode", mode, "--inception", bad, "--device", "cpu")
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
def test_real_inception(mode, sets):
    weights = _real_weights(mode)
    if weights is None:
        pytest.skip(f"{inception.INCEPTION_FILES[mode].filename} is not on this machine")
    same = fid.compute_fid(sets / "a", sets / "a", mode=mode, num_workers=0, batch_size=8)
    other = fid.compute_fid(sets / "a", sets / "b", mode=mode, num_workers=0, batch_size=8, kid=True)
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
