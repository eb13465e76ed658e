"""Checks of the committed out-of-domain test set data/openmoji64/ (built by tools/build_openmoji64.py, docs/data.md,
"openmoji64 (out of domain)")."""

from __future__ import annotations

import hashlib
import json
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
DATA = REPO / "data" / "openmoji64"
EMOJI64 = REPO / "data" / "emoji64"
BUILDER = REPO / "tools" / "build_openmoji64.py"
TARBALL = REPO / "tools" / "openmoji-17.0.0.tgz"
COUNT = 200
FOLDERS = {"test": "image_", "mask64": "mask_", "masked_image": "image_"}

pytestmark = pytest.mark.skipif(not (DATA / "manifest.json").is_file(), reason="data/openmoji64 is not built")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pixels(read_pngs) -> dict[str, tuple[str, np.ndarray]]:
    """Every PNG of the data set decoded once: relative path -> (mode, pixels)."""
    return read_pngs(DATA)


def test_counts_and_names(manifest):
    assert {p.name for p in DATA.iterdir()} == {*FOLDERS, "LICENSE", "README.md", "manifest.json"}
    for folder, prefix in FOLDERS.items():
        names = sorted(p.name for p in (DATA / folder).iterdir())
        assert names == [f"{prefix}{i:03d}.png" for i in range(COUNT)], folder
        assert manifest["counts"][folder] == COUNT
    assert sorted(manifest["files"]) == sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.png"))


def test_images_and_masks(pixels):
    for rel, (mode, arr) in pixels.items():
        if rel.startswith("mask64/"):
            assert mode == "L", rel
            assert arr.shape == (64, 64) and arr.dtype == np.uint8, rel
            assert set(np.unique(arr).tolist()) == {0, 255}, rel
            assert 0.15 <= (arr == 0).mean() <= 0.40, rel
        else:
            assert mode == "RGB", rel
            assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8, rel
    # composited onto white: the corners are white, and no image is blank
    for i in range(COUNT):
        image = pixels[f"test/image_{i:03d}.png"][1]
        assert (image < 250).any(), i
    corners = np.stack([pixels[f"test/image_{i:03d}.png"][1][[0, 0, -1, -1], [0, -1, 0, -1]] for i in range(COUNT)])
    assert (corners == 255).all(axis=-1).mean() > 0.8


def test_masks_are_the_stroke_masks_of_seed_0(pixels, manifest):
    """mask_i is generate_mask("stroke", mask_rng(0, i)): the masks of emoji64's test set, image for image."""
    assert manifest["masks"] == {"kind": "stroke", "seed": 0, "rng": "numpy default_rng([seed, index])"}
    for i in range(0, COUNT, 23):  # a sample: generating a mask takes a few ms
        expected = generate_mask("stroke", mask_rng(0, i), 64)
        np.testing.assert_array_equal(pixels[f"mask64/mask_{i:03d}.png"][1], expected, err_msg=str(i))
    if (EMOJI64 / "mask64").is_dir():
        for i in range(0, COUNT, 7):
            with Image.open(EMOJI64 / "mask64" / f"mask_{i:03d}.png") as img:
                np.testing.assert_array_equal(pixels[f"mask64/mask_{i:03d}.png"][1], np.asarray(img), err_msg=str(i))


def test_masked_image_is_test_with_gray_holes(pixels):
    for i in range(COUNT):
        image = pixels[f"test/image_{i:03d}.png"][1]
        mask = pixels[f"mask64/mask_{i:03d}.png"][1]
        masked = pixels[f"masked_image/image_{i:03d}.png"][1]
        np.testing.assert_array_equal(masked, apply_mask(image, mask), err_msg=f"image_{i:03d}.png")
        assert (masked[mask == 0] == 128).all()
        np.testing.assert_array_equal(masked[mask == 255], image[mask == 255])


def test_manifest_pixel_hashes_and_sources(pixels, manifest):
    files = manifest["files"]
    for rel, entry in files.items():
        mode, arr = pixels[rel]
        assert entry["mode"] == mode, rel
        assert hashlib.sha256(arr.tobytes()).hexdigest() == entry["sha256_pixels"], rel
    sources = [files[f"test/image_{i:03d}.png"]["source"] for i in range(COUNT)]
    assert len(set(sources)) == COUNT
    for i, src in enumerate(sources):
        assert files[f"mask64/mask_{i:03d}.png"]["source"] == src
        assert files[f"masked_image/image_{i:03d}.png"]["source"] == src
        entry = files[f"test/image_{i:03d}.png"]
        assert src.startswith("color/svg/") and src.endswith(".svg")
        assert len(entry["source_sha256"]) == 64 and entry["author"] and entry["group"], src
    # no two images share pixels
    assert len({files[f"test/image_{i:03d}.png"]["sha256_pixels"] for i in range(COUNT)}) == COUNT


def test_selection_rule(manifest):
    """Images are the candidates in salted-hash order of their SVG file names: no skin tones, no excluded group."""
    selection = manifest["selection"]
    files = manifest["files"]
    names = [files[f"test/image_{i:03d}.png"]["source"].removeprefix("color/svg/") for i in range(COUNT)]
    keys = [hashlib.sha256(f"{selection['salt']}:{n}".encode()).hexdigest() for n in names]
    assert keys == sorted(keys)
    skin_tones = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
    assert not any(skin_tones & set(n[:-4].split("-")) for n in names)
    groups = [files[f"test/image_{i:03d}.png"]["group"] for i in range(COUNT)]
    assert not set(groups) & set(selection["excluded_groups"])
    assert selection["excluded_groups"] == ["component", "extras-openmoji", "extras-unicode"]
    assert dict(sorted((g, groups.count(g)) for g in set(groups))) == selection["groups"]
    assert selection["count"] == COUNT


def test_license_and_attribution(manifest):
    license_text = (DATA / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("Attribution-ShareAlike 4.0 International")
    flat_license = " ".join(license_text.split())
    assert "Creative Commons Attribution-ShareAlike 4.0 International Public License" in flat_license
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    flat = " ".join(readme.split())
    for needle in (
        "OpenMoji – the open-source emoji and icon project",
        "https://openmoji.org",
        "https://creativecommons.org/licenses/by-sa/4.0/",
        "CC BY-SA 4.0",
        "openmoji@17.0.0",
        manifest["source"]["tarball_sha256"],
        "composited onto a white background",
        "downscaled to 64x64",
        "masks were added",
        "python tools/build_openmoji64.py",
    ):
        assert needle in flat, needle
    authors = {manifest["files"][f"test/image_{i:03d}.png"]["author"] for i in range(COUNT)}
    assert all(a in readme for a in authors)


def _tarball_missing() -> str | None:
    """Why the rebuild cannot run here (the tarball is not there), or None."""
    if not TARBALL.is_file():
        return f"{TARBALL.name} not in tools/ (cd tools && npm pack openmoji@17.0.0)"
    return None


@pytest.mark.slow
def test_rebuild_reproduces_the_committed_files(tmp_path, manifest, pinned_renderer):
    """A rebuild gives the same pixels in every PNG, the same manifest and LICENSE; and the same PNG bytes and README
    when built with the Pillow and numpy versions recorded in the README (PNG bytes depend on Pillow's zlib)."""
    reason = _tarball_missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "openmoji64"
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
        for rel in manifest["files"]:
            assert (out / rel).read_bytes() == (DATA / rel).read_bytes(), rel


def test_builder_without_tarball_explains(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--tarball", str(tmp_path / "missing.tgz"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "npm pack openmoji@17.0.0" in proc.stderr
    assert not (tmp_path / "o").exists()
