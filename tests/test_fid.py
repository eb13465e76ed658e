"""FID and KID, and `maskgit fid` / `fid-stats`, offline: a small fixed feature extractor (conftest's
`tiny_extractor`) stands in for Inception (docs/fid.md, "Offline use and tests"). Features, statistics, warnings
and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation import fid

# ------------------------------------------------------------------------------------------------------
# the command, offline


def test_fid_self_is_zero_and_other_set_is_positive(tiny_extractor, image_sets, run_json):
    same = run_json("fid", image_sets / "a", image_sets / "a")
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    other = run_json("fid", image_sets / "a", image_sets / "b")
    assert other["fid"] > 1e-3
    assert other["mode"] == "clean" and other["pred_count"] == 16 and other["ref_count"] == 16
    assert other["ref_kind"] == "folder" and other["image_size"] == [64, 64]
    assert other["feature_extractor"] == "test-tiny-conv" and other["feature_dim"] == 8
    assert other["weights"] == "custom extractor" and other["comparable_to_lab"] is False
    assert other["warnings"] == [] and "kid" not in other


def test_kid_is_repeatable_and_lower_for_the_same_set(tiny_extractor, image_sets):
    # (unbiased KID of 16 images can be negative; only the order and the repeatability are checked)
    same = fid.compute_fid(image_sets / "a", image_sets / "a", kid=True, num_workers=0)
    other = fid.compute_fid(image_sets / "a", image_sets / "b", kid=True, num_workers=0)
    again = fid.compute_fid(image_sets / "a", image_sets / "b", kid=True, num_workers=0)
    assert same["kid"] < other["kid"]
    assert other["kid"] == again["kid"]


def test_text_output_and_in_memory_pred(cli, tiny_extractor, image_sets):
    r = cli("fid", image_sets / "a", image_sets / "b", "--kid", "--device", "cpu", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("FID ") and "mode clean" in r.stdout and "KID " in r.stdout
    arr = np.stack([np.asarray(Image.open(p)) for p in sorted((image_sets / "a").iterdir())])
    from_memory = fid.compute_fid(arr, image_sets / "b", num_workers=0)
    from_folder = fid.compute_fid(image_sets / "a", image_sets / "b", num_workers=0)
    assert from_memory["fid"] == pytest.approx(from_folder["fid"], rel=1e-9)


def test_stats_without_features_rejects_kid(cli, tiny_extractor, image_sets, tmp_path):
    r = cli("fid-stats", image_sets / "b", "-o", tmp_path / "s.npz", "--no-features", "--device", "cpu")
    assert r.exit_code == 0
    r = cli("fid", image_sets / "a", tmp_path / "s.npz", "--kid", "--device", "cpu")
    assert r.exit_code == 1 and "no features" in r.stderr and "KID" in r.stderr


def test_stats_of_another_mode_or_extractor_are_refused(cli, tiny_extractor, image_sets, tmp_path, monkeypatch):
    assert cli("fid-stats", image_sets / "b", "-o", tmp_path / "s.npz", "--device", "cpu").exit_code == 0
    r = cli("fid", image_sets / "a", tmp_path / "s.npz", "--mode", "legacy_pytorch", "--device", "cpu")
    assert r.exit_code == 1 and "not comparable" in r.stderr and "--mode clean" in r.stderr
    other = type(tiny_extractor)()
    other.name = "another"
    monkeypatch.setattr(fid, "FEATURE_EXTRACTOR_OVERRIDE", other)
    r = cli("fid", image_sets / "a", tmp_path / "s.npz", "--device", "cpu")
    assert r.exit_code == 1 and "test-tiny-conv" in r.stderr


# ------------------------------------------------------------------------------------------------------
# input errors


def test_count_mismatch_is_a_warning(tiny_extractor, image_sets, tmp_path, make_images, run_json):
    make_images(tmp_path / "few", 5, seed=3)
    r = run_json("fid", tmp_path / "few", image_sets / "b")
    assert r["pred_count"] == 5 and r["ref_count"] == 16
    assert len(r["warnings"]) == 1 and "5 images" in r["warnings"][0] and "16" in r["warnings"][0]


def test_size_mismatch_and_mixed_sizes(cli, tiny_extractor, image_sets, tmp_path, make_images):
    make_images(tmp_path / "small", 4, size=32)
    r = cli("fid", tmp_path / "small", image_sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "size mismatch" in r.stderr and "32x32" in r.stderr and "64x64" in r.stderr
    make_images(tmp_path / "mixed", 3)
    make_images(tmp_path / "mixed", 1, size=32, prefix="z_")
    r = cli("fid", tmp_path / "mixed", image_sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "z_000.png" in r.stderr and "one size" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_truncated_image_is_named(tiny_extractor, image_sets, tmp_path, make_images):
    make_images(tmp_path / "trunc", 3)
    p = tmp_path / "trunc" / "image_002.png"
    p.write_bytes(p.read_bytes()[:200])  # header fine, pixel data cut
    with pytest.raises(MaskgitError, match="image_002.png"):
        fid.compute_fid(tmp_path / "trunc", image_sets / "b", num_workers=0)
