"""`maskgit inpaint`: outputs, exact per-image counts, known pixels, batching, seeds and bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.schedules import expected_counts
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
from maskgit_cli.weights import save_model


@pytest.fixture
def lab_dirs(tmp_path, make_test_set):
    """A tiny lab-layout test set: masked images (gray holes) and masks."""
    make_test_set(tmp_path, 5)
    return tmp_path / "masked_image", tmp_path / "mask64"


def run(cli, images, masks, t, v, out, *extra):
    args = ["inpaint", "--images", images, "--transformer", t, "--vqgan", v, "-o", out, "--device", "cpu"]
    if masks is not None:
        args += ["--masks", masks]
    return cli(*args, *extra)


def read(path):
    return np.asarray(Image.open(path))


def test_outputs_and_counts(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path):
    images, masks = lab_dirs
    out = tmp_path / "out"
    r = run(
        cli,
        images,
        masks,
        tiny_transformer_file,
        tiny_vqgan_file,
        out,
        "--schedule",
        "square",
        "--grids",
        "2",
        "--total-iter",
        "6",
    )
    assert r.exit_code == 0, r.output
    assert "inpainted 5 images" in r.stdout
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"image_{i:03d}.png" for i in range(5)]
    assert sorted(p.name for p in (out / "steps").iterdir()) == [
        "image_000_image.png",
        "image_000_mask.png",
        "image_001_image.png",
        "image_001_mask.png",
    ]
    assert (out / "overview.png").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["decode"]["schedule"] == "square" and report["count"] == 5
    for item in report["images"]:
        assert item["still_masked"] == expected_counts("square", 6, item["tokens_generated"])
    # the step grids: 1 + 6 mask tiles, input + 6 steps + final image tiles (each 64x64 shown at 2x, 2 px gaps)
    assert read(out / "steps" / "image_000_mask.png").shape[1] == 2 + 7 * (128 + 2)
    assert read(out / "steps" / "image_000_image.png").shape[1] == 2 + 8 * (128 + 2)


def test_known_pixels_unchanged_with_compositing(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path):
    images, masks = lab_dirs
    run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "c", "--grids", "none")
    run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "n", "--no-composite", "--grids", "0")
    for i in range(5):
        known = read(masks / f"mask_{i:03d}.png") == 255
        src = read(images / f"image_{i:03d}.png")
        comp = read(tmp_path / "c" / "images" / f"image_{i:03d}.png")
        raw = read(tmp_path / "n" / "images" / f"image_{i:03d}.png")
        assert np.array_equal(comp[known], src[known])
        assert np.array_equal(comp[~known], raw[~known])
        assert not np.array_equal(raw[known], src[known])


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_batch_size_and_seed(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path, precision):
    images, masks = lab_dirs
    for name, extra in {"b1": ["--batch-size", "1"], "b4": ["--batch-size", "4"], "s9": ["--seed", "9"]}.items():
        extra += ["--grids", "0", "--precision", precision]
        r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / name, *extra)
        assert r.exit_code == 0, r.output

    def imgs(name):
        return [read(tmp_path / name / "images" / f"image_{i:03d}.png") for i in range(5)]

    # The tokens are identical (test_decode checks batch = single exactly); the VQGAN's fp32 convolutions may
    # sum in another order for another batch size, which can move a pixel across a rounding boundary.
    for a, b in zip(imgs("b1"), imgs("b4")):
        assert np.abs(a.astype(int) - b).max() <= 1 and (a != b).mean() < 1e-3
    assert not all(np.array_equal(a, b) for a, b in zip(imgs("b1"), imgs("s9")))


def test_generated_masks_and_dilate(cli, tiny_transformer_file, tiny_vqgan_file, tmp_path, make_images):
    make_images(tmp_path / "photos", 3)
    for k in ("0", "2"):
        r = cli(
            "inpaint",
            "--images",
            tmp_path / "photos",
            "--mask-kind",
            "box",
            "--transformer",
            tiny_transformer_file,
            "--vqgan",
            tiny_vqgan_file,
            "-o",
            tmp_path / f"d{k}",
            "--dilate",
            k,
            "--device",
            "cpu",
            "--json",
        )
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["images"] == 3
    d0 = json.loads((tmp_path / "d0" / "report.json").read_text())["images"]
    d2 = json.loads((tmp_path / "d2" / "report.json").read_text())["images"]
    assert all(b["tokens_generated"] > a["tokens_generated"] for a, b in zip(d0, d2))


def test_sweet_spot_in_report(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path):
    images, masks = lab_dirs
    r = run(
        cli,
        images,
        masks,
        tiny_transformer_file,
        tiny_vqgan_file,
        tmp_path / "o",
        "--total-iter",
        "8",
        "--sweet-spot",
        "3",
        "--sampling",
        "argmax",
    )
    assert r.exit_code == 0, r.output
    for item in json.loads((tmp_path / "o" / "report.json").read_text())["images"]:
        assert item["still_masked"] == expected_counts("cosine", 8, item["tokens_generated"])[:2] + [0]


def test_errors(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path):
    images, masks = lab_dirs
    (masks / "mask_004.png").unlink()
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o")
    assert r.exit_code == 1 and "5 images" in r.stderr and "4 masks" in r.stderr and "image_004.png" in r.stderr
    Image.new("L", (32, 32), 255).save(masks / "mask_004.png")
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o")
    assert r.exit_code == 1 and "mask_004.png" in r.stderr and "32x32" in r.stderr
    r = run(cli, images, None, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o")
    assert r.exit_code == 1 and "--masks" in r.stderr and "--mask-kind" in r.stderr
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--sweet-spot", "9")
    assert r.exit_code == 1 and "--sweet-spot 9" in r.stderr
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--grids", "0,99")
    assert r.exit_code == 1 and "out of range" in r.stderr
    r = run(cli, images, masks, tiny_vqgan_file, tiny_transformer_file, tmp_path / "o")
    assert r.exit_code == 1 and "expected a transformer file" in r.stderr
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--schedule", "zigzag")
    assert r.exit_code == 2


def test_models_that_do_not_fit_together(cli, lab_dirs, tiny_vqgan_file, tmp_path):
    images, masks = lab_dirs
    path = tmp_path / "t1024.safetensors"
    save_model(path, MaskGITTransformer(get_preset("tiny")), "transformer")
    r = run(cli, images, masks, path, tiny_vqgan_file, tmp_path / "o")
    assert r.exit_code == 1 and "1024 codes but the VQGAN has 64" in r.stderr


def test_fp32_keeps_the_counts_and_known_tokens(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path):
    images, masks = lab_dirs
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--precision", "fp32")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["settings"]["precision"] == "fp32"
    for item in report["images"]:
        assert item["still_masked"] == expected_counts("cosine", 8, item["tokens_generated"])
