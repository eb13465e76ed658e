"""Checks of the committed 128x128 data set data/fluent128/ (built by tools/build_fluent128.py, docs/data.md,
"fluent128"), and a tiny `maskgit fit` on it at 128x128 (downsample 8) whose model inpaints any size."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import apply_mask

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "fluent128"
BUILDER = REPO / "tools" / "build_fluent128.py"
TARBALL = REPO / "tools" / "iconify-json-fluent-emoji-flat-1.2.6.tgz"
SIZE = 128
COUNTS = {"train": 800, "val": 100, "val_mask128": 100, "test": 100, "mask128": 100, "masked_image": 100}
MASK_SEEDS = {"mask128": (0, "test"), "val_mask128": (1, "val")}
TONES = ("-medium-dark", "-medium-light", "-dark", "-light", "-medium")

pytestmark = pytest.mark.skipif(not (DATA / "manifest.json").is_file(), reason="data/fluent128 is not built")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pixels(read_pngs) -> dict[str, tuple[str, np.ndarray]]:
    """Every PNG of the data set decoded once: relative path -> (mode, pixels)."""
    return read_pngs(DATA)


def _icons(manifest: dict, split: str) -> list[str]:
    return [manifest["files"][f"{split}/image_{i:03d}.png"]["icon"] for i in range(COUNTS[split])]


def test_counts_and_names(manifest):
    assert {p.name for p in DATA.iterdir()} == {*COUNTS, "LICENSE", "README.md", "manifest.json"}
    for folder, count in COUNTS.items():
        prefix = "mask_" if folder.endswith("mask128") else "image_"
        names = sorted(p.name for p in (DATA / folder).iterdir())
        assert names == [f"{prefix}{i:03d}.png" for i in range(count)], folder
        assert manifest["counts"][folder] == count
    assert sorted(manifest["files"]) == sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.png"))


def test_images_and_masks(pixels):
    for rel, (mode, arr) in pixels.items():
        if "mask128/" in rel:
            assert mode == "L" and arr.shape == (SIZE, SIZE) and arr.dtype == np.uint8, rel
            assert set(np.unique(arr).tolist()) == {0, 255}, rel
            assert 0.15 <= (arr == 0).mean() <= 0.40, rel
        else:
            assert mode == "RGB" and arr.shape == (SIZE, SIZE, 3) and arr.dtype == np.uint8, rel
    images = [arr for rel, (_, arr) in pixels.items() if rel.split("/")[0] in ("train", "val", "test")]
    assert len(images) == 1000
    assert all((image < 250).any() for image in images)  # none blank
    corners = np.stack([image[[0, 0, -1, -1], [0, -1, 0, -1]] for image in images])
    assert (corners == 255).all(axis=-1).mean() > 0.8  # composited onto white


def test_masks_are_the_stroke_masks_of_their_seeds(pixels, manifest):
    """mask_i of mask128/ is generate_mask("stroke", mask_rng(0, i), 128), of val_mask128/ with seed 1."""
    for folder, (seed, images) in MASK_SEEDS.items():
        assert manifest["masks"][folder] == {"kind": "stroke", "seed": seed, "images": images}
        for i in range(0, 100, 17):  # a sample: generating a mask takes a few ms
            expected = generate_mask("stroke", mask_rng(seed, i), SIZE)
            np.testing.assert_array_equal(pixels[f"{folder}/mask_{i:03d}.png"][1], expected, err_msg=f"{folder} {i}")
    assert not np.array_equal(pixels["mask128/mask_000.png"][1], pixels["val_mask128/mask_000.png"][1])


def test_masked_image_is_test_with_gray_holes(pixels):
    for i in range(COUNTS["test"]):
        image = pixels[f"test/image_{i:03d}.png"][1]
        mask = pixels[f"mask128/mask_{i:03d}.png"][1]
        masked = pixels[f"masked_image/image_{i:03d}.png"][1]
        np.testing.assert_array_equal(masked, apply_mask(image, mask), err_msg=f"image_{i:03d}.png")
        assert (masked[mask == 0] == 128).all()


def test_manifest_matches_the_pixels(pixels, manifest):
    files = manifest["files"]
    for rel, entry in files.items():
        mode, arr = pixels[rel]
        assert entry["mode"] == mode, rel
        assert hashlib.sha256(arr.tobytes()).hexdigest() == entry["sha256_pixels"], rel
    for i, icon in enumerate(_icons(manifest, "test")):
        assert files[f"mask128/mask_{i:03d}.png"]["icon"] == icon
        assert files[f"masked_image/image_{i:03d}.png"]["icon"] == icon
    for i, icon in enumerate(_icons(manifest, "val")):
        assert files[f"val_mask128/mask_{i:03d}.png"]["icon"] == icon
    images = [e["sha256_pixels"] for rel, e in files.items() if rel.split("/")[0] in ("train", "val", "test")]
    assert len(set(images)) == len(images) == 1000  # no two images share pixels, within or across splits


def test_no_emoji_is_in_two_splits(manifest):
    """Held out by emoji: each image's group is its name without skin tone, -facing-right and man/woman/person;
    one image per group, and no group in two splits (so no skin-tone variant of a test emoji is trained on)."""
    files = manifest["files"]
    groups = {}
    for split in ("train", "val", "test"):
        entries = [files[f"{split}/image_{i:03d}.png"] for i in range(COUNTS[split])]
        for e in entries:
            key = next((e["icon"].removesuffix(t) for t in TONES if e["icon"].endswith(t)), e["icon"])
            key = re.sub(r"^(man|woman|person)-|-(man|woman|person)$", "", key.removesuffix("-facing-right"))
            if e["icon"] not in ("horizontal-traffic-light", "vertical-traffic-light"):  # not a skin tone
                assert key == e["group"], e
        groups[split] = {e["group"] for e in entries}
        assert len(groups[split]) == COUNTS[split], split  # one image per group
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not groups[a] & groups[b], (a, b)


def test_selection_order(manifest):
    """Test, val, train are consecutive runs of the groups in salted-hash order of their keys."""
    salt = manifest["selection"]["salt"]
    files = manifest["files"]
    keys = [
        hashlib.sha256(f"{salt}:{files[f'{split}/image_{i:03d}.png']['group']}".encode()).hexdigest()
        for split in ("test", "val", "train")
        for i in range(COUNTS[split])
    ]
    assert keys == sorted(keys)
    assert manifest["selection"]["counts"] == {"test": 100, "val": 100, "train": 800}


def test_license_and_attribution(manifest):
    license_text = (DATA / "LICENSE").read_text(encoding="utf-8")
    assert manifest["source"]["license"] == "MIT" and manifest["source"]["author"] == "Microsoft Corporation"
    for needle in (
        "Fluent Emoji Flat by Microsoft Corporation",
        "@iconify-json/fluent-emoji-flat@1.2.6",
        "License: MIT (SPDX: MIT), https://github.com/microsoft/fluentui-emoji/blob/main/LICENSE",
        '"spdx": "MIT"',
        "Copyright (c) Microsoft Corporation.",
        "The above copyright notice and this permission notice shall be included",
    ):
        assert needle in license_text, needle
    flat = " ".join((DATA / "README.md").read_text(encoding="utf-8").split())
    for needle in (
        "Fluent Emoji by Microsoft Corporation, MIT license",
        manifest["source"]["tarball_sha256"],
        "python tools/build_fluent128.py",
        "composited onto white",
    ):
        assert needle in flat, needle


def _tarball_missing() -> str | None:
    """Why the rebuild cannot run here (the tarball is not there), or None."""
    if not TARBALL.is_file():
        return f"{TARBALL.name} not in tools/ (cd tools && npm pack @iconify-json/fluent-emoji-flat@1.2.6)"
    return None


@pytest.mark.slow
def test_rebuild_reproduces_the_committed_files(tmp_path, manifest, pinned_renderer):
    """A rebuild gives the same pixels in every PNG, the same manifest and LICENSE; and the same PNG bytes and README
    when built with the Pillow and numpy versions recorded in the README."""
    reason = _tarball_missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "fluent128"
    out.mkdir()  # an earlier build is there: the builder replaces it (it once refused, asking emoji64's rule)
    (out / "manifest.json").write_bytes((DATA / "manifest.json").read_bytes())
    subprocess.run([sys.executable, str(BUILDER), "--tarball", str(TARBALL), "--out", str(out)], check=True)
    assert (out / "manifest.json").read_bytes() == (DATA / "manifest.json").read_bytes()
    assert (out / "LICENSE").read_bytes() == (DATA / "LICENSE").read_bytes()
    rebuilt = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert rebuilt == sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*"))
    for rel in manifest["files"]:
        with Image.open(out / rel) as a, Image.open(DATA / rel) as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=rel)
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    if f"Pillow {PIL.__version__}," in readme and f"numpy {np.__version__}." in readme:
        assert (out / "README.md").read_bytes() == (DATA / "README.md").read_bytes()


def test_builder_without_tarball_explains(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--tarball", str(tmp_path / "missing.tgz"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "npm pack @iconify-json/fluent-emoji-flat@1.2.6" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_tiny_fit_at_128_inpaints_any_size(tmp_path, cli, make_photo):
    """`maskgit fit --preset tiny --resolution 128 --downsample 8` on 32 train images within a tiny budget, then
    `maskgit inpaint --model` on a 300x200 JPEG and a 97x131 PNG: sizes kept, known pixels bit-identical."""
    images = tmp_path / "train"
    images.mkdir()
    for i in range(32):
        shutil.copy(DATA / "train" / f"image_{i:03d}.png", images)
    model = tmp_path / "m128"
    r = cli("fit", images, "-o", model, "--preset", "tiny", "--resolution", 128, "--downsample", 8,
            "--time-budget", 0.25, "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    card = json.loads((model / "card.json").read_text())
    assert (card["resolution"], card["downsample"], card["tokens"]) == (128, 8, [16, 16])
    assert card["trained_on"]["images"] == 29  # 32, 3 held out for validation by file name

    photos, masks, inputs = tmp_path / "photos", tmp_path / "masks", {}
    photos.mkdir()
    masks.mkdir()
    for name, (h, w), (y0, y1, x0, x1) in [("a_photo.jpg", (200, 300), (60, 120, 100, 180)),
                                           ("b_small.png", (131, 97), (40, 80, 30, 60))]:  # fmt: skip
        Image.fromarray(make_photo(h, w)).save(photos / name, quality=90)
        mask = np.full((h, w), 255, np.uint8)
        mask[y0:y1, x0:x1] = 0
        Image.fromarray(mask).save(masks / (name.rsplit(".", 1)[0] + ".png"))
        inputs[name.rsplit(".", 1)[0]] = (np.asarray(Image.open(photos / name).convert("RGB")), mask == 255)
    r = cli("inpaint", "--images", photos, "--masks", masks, "--model", model, "-o", tmp_path / "out",
            "--total-iter", 4, "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    for stem, (pixels, known) in inputs.items():
        result = np.asarray(Image.open(tmp_path / "out" / "images" / f"{stem}.png"))
        assert result.shape == pixels.shape, stem
        assert np.array_equal(result[known], pixels[known]), stem  # known pixels bit-identical
        assert not np.array_equal(result[~known], pixels[~known]), stem
