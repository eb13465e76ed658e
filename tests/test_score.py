"""`maskgit score`: PSNR/SSIM over whole images and hole pixels, pairing, errors, --json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation.score import finite_or_none, score_folders


@pytest.fixture
def triple(tmp_path, make_images):
    """GT folder, a PRED folder that differs from it mostly inside the holes, and lab-format masks."""
    gt = make_images(tmp_path / "gt", 4, seed=5, digits=5)
    rng = np.random.default_rng(0)
    (tmp_path / "pred").mkdir()
    (tmp_path / "masks").mkdir()
    for i, p in enumerate(gt):
        img = np.asarray(Image.open(p)).astype(np.int16)
        mask = np.full((64, 64), 255, np.uint8)
        mask[10 + i : 40 + i, 8:30] = 0  # hole
        noise = rng.integers(-60, 61, img.shape)
        noise[mask == 255] //= 20  # small errors on known pixels, large ones in the hole
        Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8)).save(tmp_path / "pred" / f"image_{i:03d}.png")
        Image.fromarray(mask, mode="L").save(tmp_path / "masks" / f"mask_{i:03d}.png")
    return tmp_path / "pred", tmp_path / "gt", tmp_path / "masks"


def _load(folder):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]


def test_whole_image_scores_match_scikit_image(triple):
    metrics = pytest.importorskip("skimage.metrics")  # a dev-only dependency: the reference implementation
    peak_signal_noise_ratio, structural_similarity = metrics.peak_signal_noise_ratio, metrics.structural_similarity
    pred, gt, masks = triple
    r = score_folders(pred, gt)
    a, b = _load(pred), _load(gt)
    psnrs = [peak_signal_noise_ratio(y, x, data_range=255) for x, y in zip(a, b)]
    ssims = [structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b)]
    assert r["count"] == 4 and len(r["images"]) == 4
    assert [row["psnr"] for row in r["images"]] == pytest.approx(psnrs, rel=1e-9)
    assert [row["ssim"] for row in r["images"]] == pytest.approx(ssims, rel=1e-6)
    assert r["psnr"] == pytest.approx(np.mean(psnrs)) and r["ssim"] == pytest.approx(np.mean(ssims), rel=1e-6)
    assert "psnr_hole" not in r


def test_hole_scores_use_only_hole_pixels(triple):
    pred, gt, masks = triple
    r = score_folders(pred, gt, masks)
    a, b = _load(pred), _load(gt)
    holes = [np.asarray(Image.open(p)) == 0 for p in sorted(masks.iterdir())]
    direct = []
    for x, y, h in zip(a, b, holes):
        mse = ((x.astype(float) - y.astype(float))[h] ** 2).mean()
        direct.append(10 * math.log10(255**2 / mse))
    rows = r["images"]
    assert [row["psnr_hole"] for row in rows] == pytest.approx(direct, rel=1e-9)
    assert [row["hole_fraction"] for row in rows] == pytest.approx([h.mean() for h in holes])
    assert r["psnr_hole"] < r["psnr"] - 5 and r["ssim_hole"] < r["ssim"]
    assert r["images_with_holes"] == 4 and rows[0]["mask"] == "mask_000.png" and rows[0]["ref"] == "image_00000.png"


def test_csv_reference(triple, tmp_path):
    pred, gt, masks = triple
    rows = [",".join(map(str, x.reshape(-1))) for x in _load(gt)]
    (tmp_path / "test_gt.csv").write_text("header\n" + "\n".join(rows) + "\n")
    by_csv = score_folders(pred, tmp_path / "test_gt.csv", masks)
    by_folder = score_folders(pred, gt, masks)
    for key in ("psnr", "ssim", "psnr_hole", "ssim_hole"):
        assert by_csv[key] == pytest.approx(by_folder[key], rel=1e-12)


def test_identical_images_and_holeless_masks_are_non_finite_then_null_in_json(cli, tmp_path, make_images):
    make_images(tmp_path / "a", 2)
    (tmp_path / "m").mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64), 255, np.uint8), mode="L").save(tmp_path / "m" / f"mask_{i}.png")
    r = score_folders(tmp_path / "a", tmp_path / "a", tmp_path / "m")
    assert math.isinf(r["psnr"]) and r["ssim"] == pytest.approx(1.0)
    assert math.isnan(r["psnr_hole"]) and r["images_with_holes"] == 0
    assert finite_or_none(r)["psnr"] is None
    out = cli("score", tmp_path / "a", tmp_path / "a", "--masks", tmp_path / "m", "--json")
    assert out.exit_code == 0 and "Infinity" not in out.stdout and "NaN" not in out.stdout
    assert json.loads(out.stdout)["psnr"] is None


def test_mismatches_name_the_files(triple, tmp_path, make_images):
    pred, gt, masks = triple
    make_images(tmp_path / "three", 3)
    with pytest.raises(
        MaskgitError,
        match=r"3 images in PRED .* but 4 images in REF .*: they pair up one to one .*unpaired: .*image_00003.png",
    ):
        score_folders(tmp_path / "three", gt)
    with pytest.raises(MaskgitError, match=r"4 images in PRED .* but 3 masks in .*first unpaired: image_003.png"):
        (masks / "mask_003.png").unlink()
        score_folders(pred, gt, masks)
    make_images(tmp_path / "small", 4, size=32)
    with pytest.raises(MaskgitError, match=r"image_000.png is 32x32 but its reference .*image_00000.png is 64x64"):
        score_folders(tmp_path / "small", gt)
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(masks / "mask_003.png")
    with pytest.raises(MaskgitError, match=r"mask .*mask_003.png is 32x32 but .*image_003.png is 64x64"):
        score_folders(pred, gt, masks)
    (pred / "image_002.png").write_bytes(b"broken")
    with pytest.raises(MaskgitError, match=r"image_002.png: not a readable image"):
        score_folders(pred, gt)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskgitError, match="contains no images"):
        score_folders(tmp_path / "empty", gt)


def test_cli_text_json_and_per_image(cli, triple):
    pred, gt, masks = triple
    r = cli("score", pred, gt, "--masks", masks)
    assert r.exit_code == 0, r.output
    assert "4 image pairs: PSNR" in r.stdout and "holes only: PSNR" in r.stdout
    r = cli("score", pred, gt, "--masks", masks, "--per-image")
    assert r.exit_code == 0 and "image_003.png" in r.stdout and "PSNR hole" in r.stdout
    summary = json.loads(cli("score", pred, gt, "--masks", masks, "--json").stdout)
    assert "images" not in summary and {"psnr", "ssim", "psnr_hole", "ssim_hole", "hole_fraction"} <= set(summary)
    full = json.loads(cli("score", pred, gt, "--json", "--per-image").stdout)
    assert len(full["images"]) == 4 and full["masks"] is None
    r = cli("score", pred, gt.parent / "missing")
    assert (
        r.exit_code == 1
        and r.stderr.startswith("Error: REF ")
        and "missing: no such file or folder" in r.stderr
        and len(r.stderr.splitlines()) == 1
    )
