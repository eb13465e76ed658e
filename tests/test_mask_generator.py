"""Generated masks in the lab's format (docs/data.md, "Generated masks"): every kind, hole fractions, determinism,
and mask folders written by `write_masks`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.choices import MASK_KINDS
from maskgit_cli.data.mask_generator import generate_mask, mask_name, mask_rng, write_masks
from maskgit_cli.data.masks import apply_mask, load_mask
from maskgit_cli.errors import MaskgitError


def _hole_fraction(mask: np.ndarray) -> float:
    return float((mask == 0).mean())


def _write_images(folder, n: int, size: int = 64, suffix: str = ".png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(123)
    names = []
    for i in range(n):
        img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        name = f"image_{i:03d}{suffix}"
        Image.fromarray(img).save(folder / name)
        names.append(name)
    return names


# --- generate


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_generate_mask_format(kind):
    for seed in range(5):
        mask = generate_mask(kind, np.random.default_rng(seed))
        assert mask.shape == (64, 64)
        assert mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}
        assert 0 < _hole_fraction(mask) < 1


@pytest.mark.parametrize("kind", ["stroke", "box"])
def test_hole_fraction_within_15_40_percent(kind):
    fractions = np.array([_hole_fraction(generate_mask(kind, mask_rng(7, i))) for i in range(400)])
    assert fractions.min() >= 0.15
    assert fractions.max() <= 0.40
    # not degenerate: the fractions spread over the range
    assert fractions.max() - fractions.min() > 0.15
    assert 0.2 < fractions.mean() < 0.33


@pytest.mark.parametrize("size", [16, 32, 128])
def test_hole_fraction_other_sizes(size):
    for i in range(40):
        for kind in ("stroke", "box"):
            mask = generate_mask(kind, mask_rng(1, i), size=size)
            assert mask.shape == (size, size)
            assert 0.15 <= _hole_fraction(mask) <= 0.40


def test_half_and_outpaint_shapes():
    for i in range(20):
        half = generate_mask("half", mask_rng(0, i))
        assert _hole_fraction(half) == 0.5
        hole_rows = (half == 0).all(axis=1)
        hole_cols = (half == 0).all(axis=0)
        assert hole_rows.sum() == 32 or hole_cols.sum() == 32
        out = generate_mask("outpaint", mask_rng(0, i))
        known = np.argwhere(out == 255)
        (y0, x0), (y1, x1) = known.min(0), known.max(0)
        side = y1 - y0 + 1
        assert side == x1 - x0 + 1 and 32 <= side <= 48
        assert known.shape[0] == side * side  # the known part is exactly a square
        assert abs((y0 + y1) / 2 - 31.5) <= 0.5 and abs((x0 + x1) / 2 - 31.5) <= 0.5  # centred


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_determinism(kind):
    a = generate_mask(kind, np.random.default_rng(42))
    b = generate_mask(kind, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    distinct = {generate_mask(kind, np.random.default_rng(s)).tobytes() for s in range(12)}
    # half has 4 outcomes and outpaint 17 square sides, so only stroke and box must all differ
    assert len(distinct) > 1 if kind in ("half", "outpaint") else len(distinct) == 12


def test_unknown_kind_names_option():
    with pytest.raises(MaskgitError, match="kind"):
        generate_mask("blob", np.random.default_rng(0))


# --- write_masks


def test_write_masks_naming_and_masked_out(tmp_path):
    names = _write_images(tmp_path / "images", 5)
    masked_dir = tmp_path / "masked"
    summary = write_masks(tmp_path / "images", tmp_path / "mask64", "stroke", 3, masked_out=masked_dir)
    masks = sorted(p.name for p in (tmp_path / "mask64").iterdir())
    assert masks == [f"mask_{i:03d}.png" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "masked").iterdir()) == names
    assert summary["count"] == 5 and summary["first"] == "mask_000.png" and summary["last"] == "mask_004.png"
    assert 0.15 <= summary["hole_fraction"]["min"] <= summary["hole_fraction"]["max"] <= 0.40
    for i, name in enumerate(names):
        mask = load_mask(tmp_path / "mask64" / f"mask_{i:03d}.png", size=64)
        np.testing.assert_array_equal(mask, generate_mask("stroke", mask_rng(3, i)))  # rng from (seed, index)
        img = np.asarray(Image.open(tmp_path / "images" / name))
        masked = np.asarray(Image.open(tmp_path / "masked" / name))
        assert masked.shape == (64, 64, 3)
        assert (masked[mask == 0] == 128).all()
        np.testing.assert_array_equal(masked, apply_mask(img, mask))


def test_write_masks_deterministic_and_order_independent(tmp_path):
    _write_images(tmp_path / "a", 4)
    _write_images(tmp_path / "b", 2)  # the first two images only
    write_masks(tmp_path / "a", tmp_path / "ma", "box", 9)
    write_masks(tmp_path / "a", tmp_path / "ma2", "box", 9)
    write_masks(tmp_path / "b", tmp_path / "mb", "box", 9)
    write_masks(tmp_path / "a", tmp_path / "mc", "box", 10)
    for i in range(4):
        a = (tmp_path / "ma" / f"mask_{i:03d}.png").read_bytes()
        assert a == (tmp_path / "ma2" / f"mask_{i:03d}.png").read_bytes()
        if i < 2:
            assert a == (tmp_path / "mb" / f"mask_{i:03d}.png").read_bytes()
    differs = [
        not np.array_equal(load_mask(tmp_path / "ma" / n), load_mask(tmp_path / "mc" / n))
        for n in (f"mask_{i:03d}.png" for i in range(4))
    ]
    assert all(differs)


def test_mask_name_digits():
    assert mask_name(0, 1) == "mask_000.png"
    assert mask_name(999, 1000) == "mask_999.png"
    assert mask_name(0, 1001) == "mask_0000.png"
    assert mask_name(1000, 1001) == "mask_1000.png"
    assert mask_name(5, 12000) == "mask_00005.png"


def test_write_masks_errors(tmp_path):
    with pytest.raises(MaskgitError, match="nope"):
        write_masks(tmp_path / "nope", tmp_path / "out", "stroke", 0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(MaskgitError, match="empty"):
        write_masks(tmp_path / "empty", tmp_path / "out", "stroke", 0)
    _write_images(tmp_path / "images", 2)
    with pytest.raises(MaskgitError, match="kind"):
        write_masks(tmp_path / "images", tmp_path / "out", "blob", 0)
    with pytest.raises(MaskgitError, match="seed"):
        write_masks(tmp_path / "images", tmp_path / "out", "stroke", -1)
    with pytest.raises(MaskgitError, match="must differ"):
        write_masks(tmp_path / "images", tmp_path / "out", "stroke", 0, masked_out=tmp_path / "images")
    (tmp_path / "images" / "image_002.png").write_bytes(b"garbage")
    with pytest.raises(MaskgitError, match="image_002.png"):
        write_masks(tmp_path / "images", tmp_path / "out", "stroke", 0)
    (tmp_path / "images" / "image_002.png").unlink()
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "mask_007.png").write_bytes(b"")
    with pytest.raises(MaskgitError, match="stale"):
        write_masks(tmp_path / "images", tmp_path / "stale", "stroke", 0)


# --- write_masks: all or nothing


@pytest.fixture
def written(tmp_path):
    """Four images, their box masks (seed 1) in ``m/`` with a file of the user's, masked images in ``mi/``."""
    _write_images(tmp_path / "images", 4)
    write_masks(tmp_path / "images", tmp_path / "m", "box", 1, masked_out=tmp_path / "mi")
    (tmp_path / "m" / "notes.txt").write_text("mine")
    return tmp_path


def _full_disk_at(monkeypatch, n: int) -> None:
    real = Image.Image.save
    calls = []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) >= n:
            raise OSError(28, "No space left on device", str(fp))
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)


def test_write_masks_that_fail_leave_the_folders_as_they_were(written, monkeypatch, file_tree):
    import os
    import re

    root = written
    before = file_tree(root)
    _full_disk_at(monkeypatch, 3)  # mask 0, masked image 0, then mask 1: the disk is full
    with pytest.raises(MaskgitError) as e:
        write_masks(root / "images", root / "m", "box", 2, masked_out=root / "mi")
    assert str(e.value) == f"{root / 'm'}: cannot write the masks there (No space left on device); nothing was written."
    assert file_tree(root) == before  # no old mask replaced, no temporary folder left
    with pytest.raises(MaskgitError, match="nothing was written"):
        write_masks(root / "images", root / "new" / "m", "box", 2)
    assert file_tree(root) == before  # not even the parent folder
    monkeypatch.undo()

    (root / "images" / "image_002.png").write_bytes(b"garbage")  # a bad image halfway
    with pytest.raises(MaskgitError, match="image_002.png"):
        write_masks(root / "images", root / "m", "box", 2, masked_out=root / "mi2")
    assert file_tree(root) == {**before, root.joinpath("images/image_002.png").relative_to(root): b"garbage"}
    _write_images(root / "images", 4)
    before = file_tree(root)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)  # a folder that cannot be written (root ignores chmod)
    for out in (root / "m", root / "fresh"):
        with pytest.raises(MaskgitError, match=rf"^{re.escape(str(out))}: .*Permission denied.*nothing was written"):
            write_masks(root / "images", out, "box", 2)
        assert file_tree(root) == before
    monkeypatch.undo()

    (root / "a-file").write_text("x")
    with pytest.raises(MaskgitError, match="a-file is a file, not a folder"):
        write_masks(root / "images", root / "a-file" / "m", "box", 2)

    summary = write_masks(root / "images", root / "m", "box", 2, masked_out=root / "mi")  # now it works
    assert summary["count"] == 4 and (root / "m" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (root / "m").iterdir()) == [f"mask_{i:03d}.png" for i in range(4)] + ["notes.txt"]
    assert (root / "m" / "mask_000.png").read_bytes() != before[root.joinpath("m/mask_000.png").relative_to(root)]
    write_masks(root / "images", root / "brand" / "new", "box", 2)
    umask = os.umask(0)
    os.umask(umask)
    assert (root / "brand" / "new").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert not [p for p in root.rglob(".*")]  # no temporary folder left anywhere


@pytest.mark.parametrize("how", ["below-a-file", "mkdir-refused", "disk-full"])
def test_masks_command_that_cannot_write_is_one_line(written, cli, monkeypatch, how, file_tree):
    from pathlib import Path

    root = written
    out = root / "blocked" / "m"
    if how == "below-a-file":
        (root / "blocked").write_text("a file")
    elif how == "mkdir-refused":

        def refuse(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "mkdir", refuse)
    else:
        out = root / "m"  # replacing existing masks
        _full_disk_at(monkeypatch, 1)
    before = file_tree(root)
    r = cli("masks", root / "images", "-o", out, "--seed", "5", "--masked-out", root / "mi", "--overwrite")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), r.output
    named = out if how == "disk-full" else root / "blocked"
    assert "Traceback" not in r.output and str(named) in lines[0]
    assert file_tree(root) == before
