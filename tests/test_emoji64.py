"""Checks of the committed data set data/emoji64/ (built by tools/build_emoji64.py, docs/data.md, "emoji64")."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.data.masks import apply_mask

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "emoji64"
BUILDER = REPO / "tools" / "build_emoji64.py"
TARBALL = REPO / "tools" / "emoji-datasource-google-16.0.0.tgz"
FOLDERS = {
    "train": ("image_", 5),
    "test": ("image_", 3),
    "mask64": ("mask_", 3),
    "masked_image": ("image_", 3),
}
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}

pytestmark = pytest.mark.skipif(not (DATA / "manifest.json").is_file(), reason="data/emoji64 is not built")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pixels() -> dict[str, tuple[str, np.ndarray]]:
    """Every PNG of the data set decoded once: relative path -> (mode, pixels)."""
    out = {}
    for path in sorted(DATA.rglob("*.png")):
        with Image.open(path) as img:
            img.load()
            out[path.relative_to(DATA).as_posix()] = (img.mode, np.asarray(img))
    return out


def _names(folder: str) -> list[str]:
    return sorted(p.name for p in (DATA / folder).iterdir())


def test_counts_and_names(manifest):
    counts = manifest["counts"]
    for folder, (prefix, digits) in FOLDERS.items():
        names = _names(folder)
        assert len(names) == counts[folder], folder
        assert names == [f"{prefix}{i:0{digits}d}.png" for i in range(len(names))], folder
    assert counts["test"] == counts["mask64"] == counts["masked_image"]
    assert counts["train"] + counts["test"] == 3786  # every image of img/google/64 (docs/data.md, "emoji64")
    assert counts["base_emoji_train"] + counts["base_emoji_test"] == 1911
    # the split of issue #11 D (groups merged for identical pixels; docs/data.md, "emoji64")
    assert (counts["train"], counts["test"]) == (3371, 415)
    assert (counts["base_emoji_train"], counts["base_emoji_test"]) == (1706, 205)
    assert 0.07 < counts["test"] / 3786 < 0.13  # about 90/10
    assert sorted(manifest["files"]) == sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.png"))


def test_images_are_rgb_64(pixels):
    for rel, (mode, arr) in pixels.items():
        if rel.startswith("mask64/"):
            assert mode == "L", rel
            assert arr.shape == (64, 64), rel
            assert set(np.unique(arr).tolist()) == {0, 255}, rel
            assert 0.15 <= (arr == 0).mean() <= 0.40, rel
        else:
            assert mode == "RGB", rel
            assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8, rel


def test_masked_image_is_test_with_gray_holes(pixels, manifest):
    for i in range(manifest["counts"]["test"]):
        test = pixels[f"test/image_{i:03d}.png"][1]
        mask = pixels[f"mask64/mask_{i:03d}.png"][1]
        masked = pixels[f"masked_image/image_{i:03d}.png"][1]
        np.testing.assert_array_equal(masked, apply_mask(test, mask), err_msg=f"image_{i:03d}.png")


def test_no_base_emoji_crosses_the_split(manifest):
    files = manifest["files"]
    split_of_base: dict[str, set[str]] = {}
    split_of_key: dict[str, set[str]] = {}
    for rel, entry in files.items():
        folder = rel.split("/")[0]
        split = "train" if folder == "train" else "test"
        split_of_base.setdefault(entry["base"], set()).add(split)
        # independent of the builder's grouping: names equal up to skin tones / FE0F belong together
        key = "-".join(p for p in entry["source"][:-4].split("-") if p not in SKIN_TONES | {"fe0f"})
        if key:
            split_of_key.setdefault(key, set()).add(split)
    assert all(len(s) == 1 for s in split_of_base.values())
    assert all(len(s) == 1 for s in split_of_key.values())
    # skin-tone variants exist and stay with their base
    images = [e for rel, e in files.items() if rel.startswith(("train/", "test/"))]
    variants = [e for e in images if e["source"] != e["base"]]
    assert len(variants) == 1875
    # one test image, mask and masked image share a source
    for i in range(manifest["counts"]["test"]):
        src = files[f"test/image_{i:03d}.png"]["source"]
        assert files[f"mask64/mask_{i:03d}.png"]["source"] == src
        assert files[f"masked_image/image_{i:03d}.png"]["source"] == src
    sources = [e["source"] for rel, e in files.items() if rel.startswith(("train/", "test/"))]
    assert len(set(sources)) == len(sources) == 3786


def test_no_test_image_has_the_pixels_of_a_training_image(pixels, manifest):
    """Issue #11 D: emoji with identical artwork under different code points stay on one side of the split."""

    def digest(arr: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()

    train = {digest(arr) for rel, (_, arr) in pixels.items() if rel.startswith("train/")}
    leaked = sorted(rel for rel, (_, arr) in pixels.items() if rel.startswith("test/") and digest(arr) in train)
    assert leaked == []
    # the same check on the files decoded afresh and converted to RGB, as the models read them; image_001,
    # image_006 and image_007 were copies of training images before the fix
    for rel in sorted(p.relative_to(DATA).as_posix() for p in (DATA / "test").glob("*.png")):
        with Image.open(DATA / rel) as img:
            assert hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).hexdigest() not in train, rel
    # the groups the builder merged for identical pixels are whole on one side
    split_of_base: dict[str, set[str]] = {}
    for rel, entry in manifest["files"].items():
        if rel.startswith(("train/", "test/")):
            split_of_base.setdefault(entry["base"], set()).add(rel.split("/")[0])
    merged = manifest["split"]["merged_groups"]
    assert merged and all(len(group) > 1 for group in merged)
    for group in merged:
        assert len(set().union(*(split_of_base[b] for b in group))) == 1, group


def test_manifest_pixel_hashes(pixels, manifest):
    for rel, entry in manifest["files"].items():
        mode, arr = pixels[rel]
        assert entry["mode"] == mode, rel
        assert hashlib.sha256(arr.tobytes()).hexdigest() == entry["sha256_pixels"], rel


def test_license_and_readme(manifest):
    license_text = (DATA / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for needle in (
        "Noto Emoji",
        "Apache License 2.0",
        "emoji-datasource-google@16.0.0",
        manifest["source"]["tarball_sha256"],
        "python tools/build_emoji64.py",
    ):
        assert needle in readme, needle


@pytest.mark.slow
def test_rebuild_matches_manifest(tmp_path, manifest):
    if not TARBALL.is_file():
        pytest.skip(f"{TARBALL.name} not in tools/ (cd tools && npm pack emoji-datasource-google@16.0.0)")
    out = tmp_path / "emoji64"
    subprocess.run([sys.executable, str(BUILDER), "--tarball", str(TARBALL), "--out", str(out)], check=True)
    rebuilt = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert rebuilt["counts"] == manifest["counts"]
    assert rebuilt["source"] == manifest["source"]
    assert rebuilt["files"] == manifest["files"]
    assert rebuilt["split"] == manifest["split"]
    assert (out / "LICENSE").read_bytes() == (DATA / "LICENSE").read_bytes()


def test_builder_without_tarball_explains(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(BUILDER),
            "--tarball",
            str(tmp_path / "missing.tgz"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "npm pack emoji-datasource-google@16.0.0" in proc.stderr
    assert not (tmp_path / "o").exists()
