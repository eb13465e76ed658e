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

from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import apply_mask

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "emoji64"
BUILDER = REPO / "tools" / "build_emoji64.py"
TARBALL = REPO / "tools" / "emoji-datasource-google-16.0.0.tgz"
FOLDERS = {
    "train": ("image_", 5),
    "val": ("image_", 3),
    "val_mask64": ("mask_", 3),
    "val_masked_image": ("image_", 3),
    "test": ("image_", 3),
    "mask64": ("mask_", 3),
    "masked_image": ("image_", 3),
}
SPLIT_OF_FOLDER = {folder: folder if folder in ("train", "test") else "val" for folder in FOLDERS}
SPLIT_OF_FOLDER.update(mask64="test", masked_image="test")
# (images, masks, masked images) of the two evaluation splits; masks come from write_masks(images, masks, "stroke",
# seed, masked_out=masked images)
EVAL_SETS = {"test": ("test", "mask64", "masked_image"), "val": ("val", "val_mask64", "val_masked_image")}
MASK_FOLDERS = ("mask64", "val_mask64")
# sha256 of the manifest entries of test/, mask64/ and masked_image/ (json.dumps(entries, sort_keys=True)) since
# issue #11 D; adding val/ (issue #13) must not change them
TEST_ENTRIES_SHA256 = "b4ae15f90fdf43562be0bad521f5a470aa0fe01f2bd97d671041acc7124a3f13"
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}

pytestmark = pytest.mark.skipif(not (DATA / "manifest.json").is_file(), reason="data/emoji64 is not built")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pixels(read_pngs) -> dict[str, tuple[str, np.ndarray]]:
    """Every PNG of the data set decoded once: relative path -> (mode, pixels)."""
    return read_pngs(DATA)


def _names(folder: str) -> list[str]:
    return sorted(p.name for p in (DATA / folder).iterdir())


def test_counts_and_names(manifest):
    counts = manifest["counts"]
    for folder, (prefix, digits) in FOLDERS.items():
        names = _names(folder)
        assert len(names) == counts[folder], folder
        assert names == [f"{prefix}{i:0{digits}d}.png" for i in range(len(names))], folder
    assert counts["test"] == counts["mask64"] == counts["masked_image"]
    assert counts["val"] == counts["val_mask64"] == counts["val_masked_image"]
    # every image of img/google/64 (docs/data.md, "emoji64")
    assert counts["train"] + counts["val"] + counts["test"] == 3786
    assert counts["base_emoji_train"] + counts["base_emoji_val"] + counts["base_emoji_test"] == 1911
    # the test split of issue #11 D (groups merged for identical pixels), val held out of train by issue #13
    assert (counts["train"], counts["val"], counts["test"]) == (3057, 314, 415)
    assert (counts["base_emoji_train"], counts["base_emoji_val"], counts["base_emoji_test"]) == (1557, 149, 205)
    assert (counts["groups_train"], counts["groups_val"], counts["groups_test"]) == (1549, 146, 202)
    assert 0.07 < counts["test"] / 3786 < 0.13  # about 90/10
    assert 0.07 < counts["val"] / (counts["train"] + counts["val"]) < 0.13  # about 10% of the training emoji
    assert sorted(manifest["files"]) == sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.png"))


def test_images_are_rgb_64(pixels):
    for rel, (mode, arr) in pixels.items():
        if rel.split("/")[0] in MASK_FOLDERS:
            assert mode == "L", rel
            assert arr.shape == (64, 64), rel
            assert set(np.unique(arr).tolist()) == {0, 255}, rel
            assert 0.15 <= (arr == 0).mean() <= 0.40, rel
        else:
            assert mode == "RGB", rel
            assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8, rel


def test_masked_image_is_test_with_gray_holes(pixels, manifest):
    for split, (images, masks, masked_images) in EVAL_SETS.items():
        for i in range(manifest["counts"][split]):
            image = pixels[f"{images}/image_{i:03d}.png"][1]
            mask = pixels[f"{masks}/mask_{i:03d}.png"][1]
            masked = pixels[f"{masked_images}/image_{i:03d}.png"][1]
            np.testing.assert_array_equal(masked, apply_mask(image, mask), err_msg=f"{split} image_{i:03d}.png")


def test_masks_are_stroke_masks_of_their_seed(pixels, manifest):
    """mask64/ and val_mask64/ are the generator's stroke masks (test seed, val seed): same size, other masks."""
    assert manifest["masks"]["kind"] == "stroke"
    seeds = {"mask64": manifest["masks"]["seed"], "val_mask64": manifest["masks"]["val_seed"]}
    assert seeds["mask64"] != seeds["val_mask64"]
    for folder, seed in seeds.items():
        for i in range(0, len(_names(folder)), 37):  # a sample: generating a mask takes a few ms
            expected = generate_mask("stroke", mask_rng(seed, i), 64)
            np.testing.assert_array_equal(pixels[f"{folder}/mask_{i:03d}.png"][1], expected, err_msg=f"{folder} {i}")
    n = min(manifest["counts"]["val"], manifest["counts"]["test"])
    same = sum(np.array_equal(pixels[f"mask64/mask_{i:03d}.png"][1], pixels[f"val_mask64/mask_{i:03d}.png"][1])
               for i in range(n))  # fmt: skip
    assert same == 0


def test_test_split_unchanged_by_val(manifest):
    """Issue #13: val/ came out of the training emoji; test/, mask64/ and masked_image/ are as before."""
    entries = {k: v for k, v in manifest["files"].items() if k.split("/")[0] in ("test", "mask64", "masked_image")}
    assert len(entries) == 3 * 415
    assert hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest() == TEST_ENTRIES_SHA256


def test_split_rule(manifest):
    """Each group's side follows the rule in the manifest: hash fraction f of the group's smallest base image name;
    test iff f < test_fraction, val iff test_fraction <= f < test_fraction + val_fraction, else train."""
    split = manifest["split"]
    test_frac, val_frac = manifest["split_test_fraction"], manifest["split_val_fraction"]
    key_of = {b: min(group) for group in split["merged_groups"] for b in group}
    for rel, entry in manifest["files"].items():
        key = key_of.get(entry["base"], entry["base"])
        digest = hashlib.sha256(f"{split['salt']}:{key}".encode()).digest()
        f = int.from_bytes(digest[:8], "big") / 2.0**64
        expected = "test" if f < test_frac else "val" if f < test_frac + val_frac else "train"
        assert SPLIT_OF_FOLDER[rel.split("/")[0]] == expected, rel


def test_no_base_emoji_crosses_the_split(manifest):
    files = manifest["files"]
    split_of_base: dict[str, set[str]] = {}
    split_of_key: dict[str, set[str]] = {}
    for rel, entry in files.items():
        split = SPLIT_OF_FOLDER[rel.split("/")[0]]
        split_of_base.setdefault(entry["base"], set()).add(split)
        # independent of the builder's grouping: names equal up to skin tones / FE0F belong together
        key = "-".join(p for p in entry["source"][:-4].split("-") if p not in SKIN_TONES | {"fe0f"})
        if key:
            split_of_key.setdefault(key, set()).add(split)
    assert all(len(s) == 1 for s in split_of_base.values())
    assert all(len(s) == 1 for s in split_of_key.values())
    # skin-tone variants exist and stay with their base
    images = [e for rel, e in files.items() if rel.startswith(("train/", "val/", "test/"))]
    variants = [e for e in images if e["source"] != e["base"]]
    assert len(variants) == 1875
    # one test (val) image, mask and masked image share a source
    for split, (image_dir, mask_dir, masked_dir) in EVAL_SETS.items():
        for i in range(manifest["counts"][split]):
            src = files[f"{image_dir}/image_{i:03d}.png"]["source"]
            assert files[f"{mask_dir}/mask_{i:03d}.png"]["source"] == src
            assert files[f"{masked_dir}/image_{i:03d}.png"]["source"] == src
    sources = [e["source"] for e in images]
    assert len(set(sources)) == len(sources) == 3786


def test_no_two_splits_share_pixels(pixels, manifest):
    """Issue #11 D: emoji with identical artwork under different code points stay on one side of the split;
    issue #13: the same for train/, val/ and test/."""

    def digest(arr: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()

    hashes = {
        split: {digest(arr) for rel, (_, arr) in pixels.items() if rel.startswith(f"{split}/")}
        for split in ("train", "val", "test")
    }
    assert hashes["train"].isdisjoint(hashes["val"])
    assert hashes["train"].isdisjoint(hashes["test"])
    assert hashes["val"].isdisjoint(hashes["test"])
    # the same check on the files decoded afresh and converted to RGB, as the models read them; test image_001,
    # image_006 and image_007 were copies of training images before the fix
    for split, others in (("test", hashes["train"] | hashes["val"]), ("val", hashes["train"])):
        for path in sorted((DATA / split).glob("*.png")):
            with Image.open(path) as img:
                assert hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).hexdigest() not in others, path
    # the groups the builder merged for identical pixels are whole on one side
    split_of_base: dict[str, set[str]] = {}
    for rel, entry in manifest["files"].items():
        if rel.startswith(("train/", "val/", "test/")):
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
        "`val/` is held out of the training emoji for model selection",
        "only reported on `test/`",
        "val_mask64/",
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
    for key in ("split_test_fraction", "split_val_fraction", "masks"):
        assert rebuilt[key] == manifest[key], key
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
