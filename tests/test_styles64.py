"""The emoji styles beside emoji64 (issue 25; tools/build_styles64.py): the training styles data/blob64 and
data/fluent64, held out by emoji64's base emoji, and the check-only styles data/twemoji64 and data/emojione64, drawn
from emoji64's test emoji; and `maskgit fit` on several image folders at once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import apply_mask
from maskgit_cli.weights import read_shapes

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
BUILDER = REPO / "tools" / "build_styles64.py"
# style: (folder counts, license SPDX, author, tarball); every folder's counts as built (README "Size")
STYLES = {
    "blob": ("blob64", {"train": 1007, "val": 93, "test": 135}, "Apache-2.0", "Google Inc",
             "iconify-json-noto-v1-1.2.5.tgz"),
    "fluent": ("fluent64", {"train": 1295, "val": 130, "test": 167}, "MIT", "Microsoft Corporation",
               "iconify-json-fluent-emoji-flat-1.2.6.tgz"),
    "twemoji": ("twemoji64", {"test": 200}, "CC-BY-4.0", "Twitter", "iconify-json-twemoji-1.2.5.tgz"),
    "emojione": ("emojione64", {"test": 173}, "CC-BY-4.0", "Emoji One", "iconify-json-emojione-1.2.3.tgz"),
}  # fmt: skip
TRAINING, CHECK_ONLY = ("blob", "fluent"), ("twemoji", "emojione")
MAX_MB = 12  # what one data set may add to the repository (file bytes)


def _folders(style: str) -> dict[str, int]:
    """Every PNG folder of a style and its file count."""
    counts = STYLES[style][1]
    folders = {**counts, "mask64": counts["test"], "masked_image": counts["test"]}
    if "val" in counts:
        folders["val_mask64"] = counts["val"]
    return folders


def _manifest(name: str) -> dict:
    return json.loads((DATA / name / "manifest.json").read_text(encoding="utf-8"))


def _normalize(source: str) -> str:
    return "-".join(p for p in source.removesuffix(".png").split("-") if p != "fe0f")


@pytest.fixture(scope="module")
def emoji64_side() -> dict[str, str]:
    """emoji64: base emoji -> its split."""
    return {e["base"]: rel.split("/")[0] for rel, e in _manifest("emoji64")["files"].items() if "image_" in rel
            and rel.split("/")[0] in ("train", "val", "test")}  # fmt: skip


@pytest.mark.parametrize("style", STYLES)
def test_counts_names_sizes_and_license(style, read_pngs):
    name, _, spdx, author, tarball = STYLES[style]
    folder, manifest = DATA / name, _manifest(name)
    assert {p.name for p in folder.iterdir()} == {*_folders(style), "LICENSE", "README.md", "manifest.json"}
    for sub, count in _folders(style).items():
        prefix = "mask_" if "mask64" in sub else "image_"
        digits = 5 if sub == "train" else 3
        assert sorted(p.name for p in (folder / sub).iterdir()) == [f"{prefix}{i:0{digits}d}.png" for i in
                                                                     range(count)], sub  # fmt: skip
        assert manifest["counts"][sub] == count
    assert sum(p.stat().st_size for p in folder.rglob("*")) < MAX_MB * 1e6
    pixels = read_pngs(folder)
    assert sorted(pixels) == sorted(manifest["files"])
    for rel, (mode, arr) in pixels.items():
        entry = manifest["files"][rel]
        assert entry["mode"] == mode and hashlib.sha256(arr.tobytes()).hexdigest() == entry["sha256_pixels"], rel
        if "mask64/" in rel:
            assert arr.shape == (64, 64) and set(np.unique(arr).tolist()) == {0, 255}, rel
        else:
            assert mode == "RGB" and arr.shape == (64, 64, 3) and (arr < 250).any(), rel  # none blank
    if style in CHECK_ONLY:  # pixel duplicates skipped (the training styles keep them in one split, as emoji64)
        images = [e["sha256_pixels"] for rel, e in manifest["files"].items() if rel.startswith("test/")]
        assert len(set(images)) == len(images)
    for i in range(0, manifest["counts"]["test"], 23):  # emoji64's test masks, and the masked images from them
        mask = pixels[f"mask64/mask_{i:03d}.png"][1]
        np.testing.assert_array_equal(mask, generate_mask("stroke", mask_rng(0, i), 64))
        masked = pixels[f"masked_image/image_{i:03d}.png"][1]
        np.testing.assert_array_equal(masked, apply_mask(pixels[f"test/image_{i:03d}.png"][1], mask))
    if "val" in STYLES[style][1]:
        np.testing.assert_array_equal(pixels["val_mask64/mask_000.png"][1], generate_mask("stroke", mask_rng(1, 0)))
    assert (manifest["source"]["license"], manifest["source"]["author"]) == (spdx, author)
    assert manifest["source"]["tarball"] == tarball
    license_text = (folder / "LICENSE").read_text(encoding="utf-8")
    assert f"(SPDX: {spdx})" in license_text and author in license_text
    needle = {"Apache-2.0": "TERMS AND CONDITIONS FOR USE", "MIT": "Permission is hereby granted",
              "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/legalcode"}[spdx]  # fmt: skip
    assert needle in license_text
    readme = " ".join((folder / "README.md").read_text(encoding="utf-8").split())
    assert manifest["source"]["tarball_sha256"] in readme and f"build_styles64.py --style {style}" in readme


def test_no_base_emoji_is_in_two_splits_across_emoji64_blob64_and_fluent64(emoji64_side):
    """A base emoji is on one side in every training style: emoji64's side, or emoji64's rule where it has none."""
    side = dict(emoji64_side)
    for style in TRAINING:
        name = STYLES[style][0]
        for rel, entry in _manifest(name)["files"].items():
            split = rel.split("/")[0]
            if split in ("train", "val", "test"):
                assert side.setdefault(entry["base"], split) == split, (name, rel, entry)
    assert set(side.values()) == {"train", "val", "test"}


def test_no_pixels_are_shared_between_splits_of_any_training_style():
    first: dict[str, tuple[str, str]] = {}
    for name in ("emoji64", *(STYLES[s][0] for s in TRAINING)):
        for rel, entry in _manifest(name)["files"].items():
            split = rel.split("/")[0]
            if split in ("train", "val", "test"):
                seen = first.setdefault(entry["sha256_pixels"], (split, f"{name}/{rel}"))
                assert seen[0] == split, (seen, rel)


def test_the_check_sets_draw_only_emoji64_test_emoji(emoji64_side):
    test_emoji = {
        _normalize(e["source"]) for rel, e in _manifest("emoji64")["files"].items() if rel.startswith("test/")
    }
    for style in CHECK_ONLY:
        files = _manifest(STYLES[style][0])["files"]
        entries = [files[f"test/image_{i:03d}.png"] for i in range(STYLES[style][1]["test"])]
        assert all(emoji64_side[e["base"]] == "test" for e in entries), style
        assert all(e["codepoints"] in test_emoji for e in entries), style
        for i, e in enumerate(entries):
            assert files[f"mask64/mask_{i:03d}.png"]["icon"] == e["icon"]


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
def test_a_rebuild_reproduces_every_file(style, tmp_path, pinned_renderer):
    """Every PNG's pixels, the manifest and LICENSE; the README too when built with the recorded Pillow and numpy."""
    name, _, _, _, tarball = STYLES[style]
    tarballs = [REPO / "tools" / tarball, REPO / "tools" / STYLES["twemoji"][4]]
    for missing in (t for t in tarballs if not t.is_file()):
        pytest.skip(f"{missing.name} not in tools/ (see .ci/run)")
    out, committed = tmp_path / name, DATA / name
    subprocess.run([sys.executable, str(BUILDER), "--style", style, "--tarball", tarballs[0], "--out", out],
                   check=True, capture_output=True)  # fmt: skip
    assert (out / "manifest.json").read_bytes() == (committed / "manifest.json").read_bytes()
    assert (out / "LICENSE").read_bytes() == (committed / "LICENSE").read_bytes()
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(p.relative_to(committed) for p in
                                                                          committed.rglob("*"))  # fmt: skip
    for rel in _manifest(name)["files"]:
        with Image.open(out / rel) as a, Image.open(committed / rel) as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=rel)
    readme = (committed / "README.md").read_text(encoding="utf-8")
    if f"Pillow {PIL.__version__}," in readme and f"numpy {np.__version__}." in readme:
        assert (out / "README.md").read_bytes() == (committed / "README.md").read_bytes()


@pytest.mark.slow
def test_fit_takes_several_folders_and_sees_every_image(tmp_path, make_images, cli):
    """`maskgit fit A B` (tiny preset): every image of both folders is trained on or validated on, the same file
    name in both folders included; fit.json and the card list both folders."""
    a, b = tmp_path / "style-a" / "train", tmp_path / "style-b" / "train"
    make_images(a, 7, seed=1)
    make_images(b, 5, seed=2)  # image_000.png ... image_004.png are in both folders
    model = tmp_path / "model"
    r = cli("fit", a, b, "-o", model, "--preset", "tiny", "--device", "cpu")
    assert r.exit_code == 0, r.output
    data = model / "runs" / "data"
    linked = sorted(os.path.realpath(p) for d in ("train", "val") for p in (data / d).iterdir())
    assert linked == sorted(str(p.resolve()) for p in [*a.iterdir(), *b.iterdir()])  # all 12 images, once
    card = json.loads((model / "card.json").read_text())
    assert card["trained_on"]["images"] + card["split"]["val_images"] == 12
    assert card["trained_on"]["folder"] == f"{a} {b}"
    assert "style-a/train/, style-b/train/" in card["note"]
    settings = json.loads((model / "runs" / "fit.json").read_text())["settings"]
    assert settings["images"] == [str(a.resolve()), str(b.resolve())]
    rows = {part: read_shapes(model / "runs" / "tokens" / f"{part}.tokens")["tokens"][0] for part in ("train", "val")}
    assert rows == {"train": 2 * card["trained_on"]["images"], "val": card["split"]["val_images"]}  # + flips


def test_fit_with_val_links_every_folder_and_refuses_a_folder_given_twice(tmp_path, make_images):
    from maskgit_cli.errors import MaskgitError
    from maskgit_cli.fit.split import make_split

    a, b, val = tmp_path / "a", tmp_path / "b", tmp_path / "val"
    make_images(a, 3, seed=1)
    make_images(b, 2, seed=2)
    make_images(val, 2, seed=3)
    split = make_split([a, b], val, None, tmp_path / "data", 64)
    assert split.train_images == 5 and split.val == val
    assert sorted(p.name for p in split.train.iterdir()) == ["0-image_000.png", "0-image_001.png", "0-image_002.png",
                                                             "1-image_000.png", "1-image_001.png"]  # fmt: skip
    assert os.path.realpath(split.train / "1-image_001.png") == str((b / "image_001.png").resolve())
    with pytest.raises(MaskgitError, match=r"^IMAGES \S+/b/\.\./a: given twice$"):
        make_split([a, b, b / ".." / "a"], val, None, tmp_path / "data2", 64)
    one = make_split([a], val, None, tmp_path / "data3", 64)
    assert one.train == a  # one folder: read as it is, as before
