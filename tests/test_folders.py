"""`maskgit inpaint` over folders (decoding/folders.py): outputs, counts, grids, errors, samples, any size."""

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
    pasted = ("--grids", "none", "--blend", "none", "--fill", "sharp")
    run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "c", *pasted)
    run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "p", "--grids", "none")  # poisson
    run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "n", "--no-composite", "--grids", "0")
    for i in range(5):
        known = read(masks / f"mask_{i:03d}.png") == 255
        src = read(images / f"image_{i:03d}.png")
        comp = read(tmp_path / "c" / "images" / f"image_{i:03d}.png")
        blended = read(tmp_path / "p" / "images" / f"image_{i:03d}.png")
        raw = read(tmp_path / "n" / "images" / f"image_{i:03d}.png")
        assert np.array_equal(comp[known], src[known]) and np.array_equal(blended[known], src[known])
        assert np.array_equal(comp[~known], raw[~known])  # pasted as decoded
        assert not np.array_equal(blended[~known], raw[~known])  # shifted toward the known pixels
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
    assert r.exit_code == 2 and "--sweet-spot 9" in r.stderr  # a bad option value
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--grids", "0,99")
    assert r.exit_code == 2 and "out of range" in r.stderr
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
    assert report["settings"]["precision"] == report["settings"]["precision_used"] == "fp32"
    for item in report["images"]:
        assert item["still_masked"] == expected_counts("cosine", 8, item["tokens_generated"])


@pytest.fixture
def lab_vqgan_file(tmp_path, tiny_vqgan):
    """The tiny VQGAN with test-set statistics recorded, as `maskgit convert-vqgan` records the lab's."""
    import dataclasses

    from maskgit_cli.vqgan.model import VQGAN

    config = dataclasses.replace(tiny_vqgan.config, test_mean=(0.45, 0.4, 0.35), test_std=(0.3, 0.28, 0.26))
    model = VQGAN(config)
    model.load_state_dict(tiny_vqgan.state_dict())
    path = tmp_path / "lab-vqgan.safetensors"
    save_model(path, model, "vqgan")
    return path


def test_lab_mode_is_the_labs_inference_with_its_folders(
    cli, lab_dirs, tiny_transformer_file, lab_vqgan_file, tmp_path
):
    images, masks = lab_dirs
    out = tmp_path / "lab"
    r = run(cli, images, masks, tiny_transformer_file, lab_vqgan_file, out, "--lab", "--sweet-spot", "3")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "imga",
        "mask_scheduling",
        "overview.png",
        "report.json",
        "test_results",
    ]
    assert sorted(p.name for p in (out / "test_results").iterdir()) == [f"image_{i:03d}.png" for i in range(5)]
    for folder in ("mask_scheduling", "imga"):  # grids for every image
        assert sorted(p.name for p in (out / folder).iterdir()) == [f"test_{i}.png" for i in range(5)]
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["decode"]["sampling"] == "argmax" and settings["composite"] is False
    assert settings["dilate"] == 0 and settings["pixel_guidance"] == 0 and settings["normalization"] == "test"
    assert settings["vqgan_mean"] == [0.45, 0.4, 0.35] and settings["vqgan_std"] == [0.3, 0.28, 0.26]
    assert settings["layout"] == "lab" and "test_results" in r.stdout
    # the lab's pictures (docs/lab.md): imga has T + 1 = 9 tiles of 64x64, seven to a row, 2-px black borders, the
    # tiles of the steps not run (4..8) black; mask_scheduling has T = 8 tiles of 16x16 in one row
    imga = read(out / "imga" / "test_0.png")
    assert imga.shape == (2 + 2 * 66, 2 + 7 * 66, 3) and not imga[2 + 66 :, 2 + 66 :].any()
    assert imga[2:66, 2 + 3 * 66 : 66 + 3 * 66].any() and not imga[2:66, 2 + 4 * 66 :].any()
    masks_picture = read(out / "mask_scheduling" / "test_0.png")
    assert masks_picture.shape == (20, 2 + 8 * 18, 3) and not masks_picture[:, 2 + 3 * 18 :].any()
    # any single lab setting can still be given
    r = run(cli, images, masks, tiny_transformer_file, lab_vqgan_file, tmp_path / "b", "--lab", "--dilate", "1",
            "--sampling", "sample", "--layout", "ours", "--grids", "none")  # fmt: skip
    settings = json.loads((tmp_path / "b" / "report.json").read_text())["settings"]
    assert (
        settings["dilate"] == 1 and settings["decode"]["sampling"] == "sample" and settings["normalization"] == "test"
    )
    assert (tmp_path / "b" / "images").is_dir() and not (tmp_path / "b" / "steps").exists()
    assert "grids:" not in r.stdout


def test_test_normalization_changes_the_tokens_and_needs_recorded_statistics(
    cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, lab_vqgan_file, tmp_path
):
    images, masks = lab_dirs
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--normalization", "test")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        "Error: --normalization test: this VQGAN records no test-set statistics (a VQGAN converted from the lab's "
        "VQGAN.pt with `maskgit convert-vqgan` does); use --normalization train"
    ]
    outs = {}
    for which in ("train", "test"):
        outs[which] = tmp_path / which
        r = run(cli, images, masks, tiny_transformer_file, lab_vqgan_file, outs[which], "--normalization", which,
                "--no-composite")  # fmt: skip
        assert r.exit_code == 0, r.output
    assert any((read(outs["train"] / "images" / n) != read(outs["test"] / "images" / n)).any() for n in
               [f"image_{i:03d}.png" for i in range(5)])  # fmt: skip


def test_an_output_folder_is_never_mixed(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path, monkeypatch):
    images, masks = lab_dirs
    out = tmp_path / "out"
    assert run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, out, "--grids", "2").exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, out, "--seed", "1")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: -o {out}: already holds results (e.g. images); pass --overwrite to replace the whole folder, or "
        "choose another output folder (results of two runs are never mixed)"
    ]
    # a full disk half-way: the previous results stay as they were, nothing half-written is left
    import maskgit_cli.decoding.folders as folders

    calls = []

    def full_disk(array, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        inpaint_save(array, path)

    inpaint_save = folders.save_image
    monkeypatch.setattr(folders, "save_image", full_disk)
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, out, "--seed", "1", "--overwrite")
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert r.exit_code == 1 and errors == [f"Error: {out}/images/image_002.png: No space left on device"]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial folder
    monkeypatch.undo()
    # --overwrite replaces the whole folder: no grids from the first run remain
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, out, "--overwrite", "--grids", "none")
    assert r.exit_code == 0, r.output
    assert not (out / "steps").exists() and len(list((out / "images").iterdir())) == 5
    # never onto the inputs, even with --overwrite
    for target in (images, images.parent):
        r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, target, "--overwrite")
        assert r.exit_code == 1 and "holds the input" in r.stderr
    assert len(list(images.iterdir())) == 5


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_pixel_guidance_must_be_finite(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path, value):
    images, masks = lab_dirs
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--pixel-guidance", value)
    assert r.exit_code in (1, 2) and "--pixel-guidance" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_more_steps_than_tokens_are_refused_before_any_work(
    cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path
):
    images, masks = lab_dirs
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "o", "--total-iter", "1000000")
    assert r.exit_code == 1 and "at most 256 steps" in r.stderr and not (tmp_path / "o").exists()


def test_fallback_code_patches_are_decoded_once_and_cached(
    cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path
):
    images, masks = lab_dirs
    cache = tiny_transformer_file.with_suffix(".code-patches.safetensors")
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "a")
    assert r.exit_code == 0, r.output
    assert "decoding them from the VQGAN once" in r.stderr and cache.is_file()
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "b")
    assert r.exit_code == 0 and "decoding them" not in r.stderr and "cached in" in r.stderr
    for i in range(5):
        assert (
            read(tmp_path / "a" / "images" / f"image_{i:03d}.png")
            == read(tmp_path / "b" / "images" / f"image_{i:03d}.png")
        ).all()
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["settings"]["code_patches"].startswith("VQGAN decode (cached in")


def test_an_unwritable_output_is_one_line(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path, monkeypatch):
    images, masks = lab_dirs
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, blocker / "out")
    assert r.exit_code == 1 and r.stderr.strip() == f"Error: -o {blocker / 'out'}: {blocker} is a file, not a folder"
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, blocker)
    assert r.exit_code == 1 and r.stderr.strip() == f"Error: -o {blocker}: exists and is not a folder"
    import os

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", read_only)  # the results cannot be put in place
    monkeypatch.setattr("pathlib.Path.rename", lambda self, dst: read_only(self, dst))
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "ro")
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert r.exit_code == 1 and errors == [f"Error: {tmp_path / 'ro'}: Permission denied"], r.stderr
    assert not (tmp_path / "ro").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ro")]


def test_num_samples_writes_different_results_and_a_sheet(
    cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path
):
    images, masks = lab_dirs
    out = tmp_path / "s"
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, out, "--num-samples", "3", "--grids", "1")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [f"image_{i:03d}_{k}.png" for i in range(5) for k in range(3)]
    for i in range(5):
        samples = [read(out / "images" / f"image_{i:03d}_{k}.png").tobytes() for k in range(3)]
        assert len(set(samples)) > 1, i  # not all identical
    assert (out / "samples.png").is_file() and (out / "steps" / "image_000_image.png").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["images"][0]["samples"] == ["image_000_0.png", "image_000_1.png", "image_000_2.png"]
    # sample 0 is the single result of the same seed
    one = tmp_path / "one"
    assert run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, one, "--grids", "none").exit_code == 0
    assert (read(one / "images" / "image_002.png") == read(out / "images" / "image_002_0.png")).all()
    # scores read sample 0 of each image (report.json names them): the same numbers as the single run
    several = json.loads(cli("score", out / "images", images, "--masks", masks, "--json").stdout)
    single = json.loads(cli("score", one / "images", images, "--masks", masks, "--json").stdout)
    assert several["count"] == 5 and several["psnr_hole"] == single["psnr_hole"]
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, tmp_path / "z", "--num-samples", "0")
    assert r.exit_code == 2


def _holes(h, w):
    """Two groups of holes, far apart: a box and a stroke."""
    mask = np.full((h, w), 255, np.uint8)
    mask[h // 4 : h // 4 + 12, w // 5 : w // 5 + 30] = 0
    mask[h - 20 : h - 14, w // 2 : w - 5] = 0
    return mask


@pytest.fixture
def any_size_dirs(make_photo, tmp_path):
    """The issue's case: a 300x200 JPEG and a 97x131 PNG, with masks of their sizes."""
    images, masks = tmp_path / "photos", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    Image.fromarray(make_photo(200, 300)).save(images / "a_wide.jpg", quality=90)
    Image.fromarray(make_photo(131, 97, seed=1)).save(images / "b_tall.png")
    Image.fromarray(_holes(200, 300)).save(masks / "a_wide.png")
    Image.fromarray(_holes(131, 97)).save(masks / "b_tall.png")
    return images, masks


def test_any_size_with_the_shipped_weights(cli, any_size_dirs, tmp_path):
    from maskgit_cli import Inpainter

    images, masks = any_size_dirs
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "o", "--device", "cpu", "--grids", "all")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    pipe = Inpainter.from_pretrained(device="cpu")
    files = sorted(images.iterdir())
    api = pipe([Image.open(f) for f in files], [Image.open(masks / f"{f.stem}.png") for f in files])
    for k, (name, (w, h)) in enumerate((("a_wide", (300, 200)), ("b_tall", (97, 131)))):
        result = Image.open(tmp_path / "o" / "images" / f"{name}.png")
        assert result.size == (w, h) and result.format == "PNG"
        src = next(images.glob(f"{name}.*"))
        decoded_input = np.asarray(Image.open(src).convert("RGB"))
        known = read(masks / f"{name}.png") == 255
        assert (read(result.filename)[known] == decoded_input[known]).all()  # bit-identical outside the holes
        assert (np.asarray(api[k]) == read(result.filename)).all()  # the same pixels from Python
        grid = Image.open(tmp_path / "o" / "steps" / f"{name}_image.png")
        row = next(p for p in report["images"] if p["input"] == src.name)
        assert row["size"] == [w, h] and len(row["windows"]) >= 1
        assert grid.size[0] == 2 + (8 + 2) * (64 * 2 + 2)  # input, 8 steps, result: at the model's size (x2)
        assert grid.size[1] > 2 + len(row["windows"]) * (64 * 2 + 2)  # a row per window, under the title
    wide = next(p for p in report["images"] if p["input"] == "a_wide.jpg")
    assert len(wide["windows"]) == 2  # crop: one window per group of holes
    assert report["settings"]["fit"] == "auto"


def test_any_size_resize_and_none(cli, any_size_dirs, tmp_path):
    images, masks = any_size_dirs
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "o", "--device", "cpu", "--fit", "resize")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [p["windows"] for p in report["images"]] == [[[0, 0, 300, 200]], [[0, 0, 97, 131]]]
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "n", "--device", "cpu", "--fit", "none")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: {images / 'a_wide.jpg'}: image is 300x200, but the model inpaints 64x64 images"
    ]
    assert not (tmp_path / "n").exists()


def test_transparent_pixels_are_the_holes(make_photo, cli, tmp_path):
    images, masks = tmp_path / "rgba", tmp_path / "alpha-masks"
    images.mkdir(), masks.mkdir()
    photo, holes = make_photo(90, 120), _holes(90, 120)
    Image.fromarray(np.dstack([photo, holes])).save(images / "erased.png")  # an editor's eraser: alpha 0 = hole
    r = cli("inpaint", "--images", images, "-o", tmp_path / "o", "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = read(tmp_path / "o" / "images" / "erased.png")
    assert out.shape == (90, 120, 3) and (out[holes == 255] == photo[holes == 255]).all()
    assert (out[holes == 0] != photo[holes == 0]).any()
    # a mask file whose alpha channel says where the holes are reads the same
    Image.fromarray(photo).save(images / "erased.png")
    Image.fromarray(np.dstack([np.zeros_like(photo), holes])).save(masks / "erased.png")
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "m", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (read(tmp_path / "m" / "images" / "erased.png") == out).all()
    # no masks and nothing transparent: one line naming the file
    r = cli("inpaint", "--images", images, "-o", tmp_path / "x", "--device", "cpu")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: {images / 'erased.png'}: no --masks, no --mask-kind, and the image has no transparent pixels to "
        "read as holes (alpha 0 = hole)"
    ]


def test_any_size_input_errors_are_one_line(make_photo, cli, any_size_dirs, tmp_path):
    images, masks = any_size_dirs
    Image.fromarray(_holes(100, 100)).save(masks / "b_tall.png")  # a mask of another size
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "o", "--device", "cpu")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: mask {masks / 'b_tall.png'} is 100x100 but its image b_tall.png is 97x131: they must be the same size"
    ]
    (images / "b_tall.png").unlink(), (masks / "b_tall.png").unlink()
    Image.fromarray(make_photo(12, 40)).save(images / "b_tiny.png")
    Image.fromarray(np.zeros((12, 40), np.uint8)).save(masks / "b_tiny.png")
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "o", "--device", "cpu")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: {images / 'b_tiny.png'}: the image is 40x12: too small to inpaint (at least 16x16 pixels)"
    ]
    Image.fromarray(make_photo(40, 40)).save(images / "a_wide.png")  # a_wide.jpg and a_wide.png: one output name
    r = cli("inpaint", "--images", images, "--mask-kind", "box", "-o", tmp_path / "o", "--device", "cpu")
    assert r.exit_code == 1 and "a_wide.jpg and a_wide.png in" in r.stderr and "rename one" in r.stderr
    assert not (tmp_path / "o").exists()


def test_any_size_samples_differ(cli, any_size_dirs, tmp_path):
    images, masks = any_size_dirs
    r = cli("inpaint", "--images", images, "--masks", masks, "-o", tmp_path / "o", "--device", "cpu",
            "--num-samples", "3", "--grids", "none")  # fmt: skip
    assert r.exit_code == 0, r.output
    samples = [read(tmp_path / "o" / "images" / f"b_tall_{k}.png") for k in range(3)]
    assert all(s.shape == (131, 97, 3) for s in samples)
    assert len({s.tobytes() for s in samples}) > 1
    assert Image.open(tmp_path / "o" / "samples.png").size[0] == 2 + 4 * (64 * 2 + 2)  # input + 3 samples


def test_default_dilate_follows_the_vqgans_reach(cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path):
    """Without --dilate: one ring around the holes for an image-wide VQGAN (the tiny preset), none for a local one
    whose tokens see their own patch (the gray fill reaches no other token); --dilate still wins; --lab is 0."""
    from dataclasses import replace

    import torch

    from maskgit_cli.data.masks import HOLE, load_mask, token_mask_for
    from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS

    images, masks = lab_dirs
    torch.manual_seed(0)
    local = tmp_path / "local.safetensors"
    save_model(local, VQGAN(replace(VQGAN_PRESETS["tiny"], encoder_reach=0, local_dim=32, local_blocks=1)), "vqgan")
    holes = torch.stack([torch.from_numpy(load_mask(f) == HOLE) for f in sorted(masks.iterdir())])
    for vqgan, extra, want in [
        (tiny_vqgan_file, (), 1),
        (local, (), 0),
        (local, ("--dilate", "2"), 2),
        (tiny_vqgan_file, ("--lab", "--normalization", "train"), 0),
    ]:
        out = tmp_path / f"out-{want}-{len(extra)}"
        r = run(cli, images, masks, tiny_transformer_file, vqgan, out, "--grids", "none", *extra)
        assert r.exit_code == 0, r.output
        report = json.loads((out / "report.json").read_text())
        assert report["settings"]["dilate_used"] == want
        generated = token_mask_for(holes, 16, dilate=want).flatten(1).sum(1).tolist()
        assert [item["tokens_generated"] for item in report["images"]] == generated


def test_the_same_image_mask_and_seed_give_the_same_pixels_in_every_front_end(
    cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path
):
    """Issue 28 item 5: the random streams are keyed by the image's pixels and holes, not by its index in its
    folder: the image alone, the same image after a file that sorts earlier, the Python API and the page's handler
    give the same pixels (and --lab keeps the lab's numbering)."""
    import shutil

    from maskgit_cli.decoding.pipeline import Inpainter, stream_key
    from maskgit_cli.web.handlers import Page

    images, masks = lab_dirs
    alone, after = tmp_path / "alone", tmp_path / "after"
    for folder, files in ((alone, ["image_003.png"]), (after, ["image_000.png", "image_003.png"])):
        for sub, source in (("images", images), ("masks", masks)):
            (folder / sub).mkdir(parents=True)
            for name in files:
                mask_name = sorted(p.name for p in masks.iterdir())[int(name[6:9])]
                shutil.copy(source / (name if sub == "images" else mask_name), folder / sub / name)
    # --fill sharp --draws 1: the VQGAN's decode, whose floats differ by ~2e-5 from one batch size to another
    # (docs/lab.md), mixed with the smooth prior or averaged over draws rounds a few values of this image one level
    # apart in a batch of one and of two; the tokens (what the random streams decide) do not depend on the batch
    settings = ("--schedule", "cosine", "--total-iter", "6", "--seed", "3", "--pixel-guidance", "0", "--grids", "none",
                "--fill", "sharp", "--draws", "1")  # fmt: skip
    results = []
    for folder in (alone, after):
        models = (tiny_transformer_file, tiny_vqgan_file)
        r = run(cli, folder / "images", folder / "masks", *models, folder / "o", *settings)
        assert r.exit_code == 0, r.output
        results.append(read(folder / "o" / "images" / "image_003.png"))
    assert np.array_equal(results[0], results[1])  # the file's index (0, then 1) no longer matters

    image = np.array(Image.open(images / "image_003.png").convert("RGB"))
    mask = np.asarray(Image.open(sorted(masks.iterdir())[3]))
    pipe = Inpainter(tiny_transformer_file, tiny_vqgan_file, "cpu", schedule="cosine", total_iter=6, seed=3,
                     pixel_guidance=0.0, fill="sharp", draws=1)  # fmt: skip
    assert np.array_equal(np.asarray(pipe(image, mask)), results[0])
    assert np.array_equal(np.asarray(pipe([np.zeros_like(image), image], [mask, mask])[1]), results[0])

    page = Page(pipe, tmp_path / "page")
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask == 0] = 255  # the brush painted the holes
    editor = {"background": image, "layers": [layer]}
    job, _ = page.read(editor, None, "brush", 0)
    *_, done = page.run(job, "cosine", 6, 0, "confidence", 0, 3, 1, "auto", None, None)
    assert np.array_equal(np.asarray(Image.open(done["result"]).convert("RGB")), results[0])

    # the key: 63 bits of what the image carries; what lies under a hole does not count
    key = stream_key(image, mask == 0)
    assert 0 <= key < 2**63 and key != stream_key(image, np.zeros_like(mask, dtype=bool))
    assert key == stream_key(np.where((mask == 0)[..., None], 7, image).astype(np.uint8), mask == 0)


@pytest.mark.parametrize("where", [".", "..", "./"])
def test_the_current_folder_as_output_is_one_line(
    cli, lab_dirs, tiny_transformer_file, tiny_vqgan_file, tmp_path, monkeypatch, file_tree, where
):
    """Issue 28 item 10: `-o .` was a ValueError traceback (a folder with an empty name); the current folder, or
    one above it, is refused in one line (replacing it whole would pull the working folder away), nothing written."""
    images, masks = lab_dirs
    here = tmp_path / "work" / "empty"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    before = file_tree(tmp_path)
    r = run(cli, images, masks, tiny_transformer_file, tiny_vqgan_file, where, "--overwrite")
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: -o {where.rstrip('/') or '.'}: is the current folder or holds it; name a folder for the results, "
        "e.g. -o out"
    ]
    assert file_tree(tmp_path) == before and here.is_dir()
