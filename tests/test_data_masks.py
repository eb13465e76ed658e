"""Lab-format masks (docs/data.md, "Masks"): loading, applying (gray holes), pixel masks to token masks, dilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.data.mask_generator import generate_mask, write_masks
from maskgit_cli.data.masks import (
    apply_mask,
    check_mask_folder,
    dilate_token_mask,
    load_mask,
    pixel_to_token_mask,
)
from maskgit_cli.errors import MaskgitError

# --- apply / load


def test_apply_mask_fills_gray():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    mask = generate_mask("box", rng)
    out = apply_mask(img, mask)
    holes = mask == 0
    assert (out[holes] == 128).all()
    np.testing.assert_array_equal(out[~holes], img[~holes])
    assert out is not img and out.dtype == np.uint8
    with pytest.raises(MaskgitError):
        apply_mask(img, mask[:32])


def test_load_mask_formats(tmp_path):
    mask = generate_mask("stroke", np.random.default_rng(3))
    Image.fromarray(mask).save(tmp_path / "l.png")
    Image.fromarray(np.stack([mask] * 3, -1)).save(tmp_path / "rgb.png")
    rgba = np.dstack([mask, mask, mask, np.full_like(mask, 255)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    soft = np.where(mask == 0, 100, 200).astype(np.uint8)  # threshold at 128
    Image.fromarray(soft).save(tmp_path / "soft.png")
    for name in ("l.png", "rgb.png", "rgba.png", "soft.png"):
        loaded = load_mask(tmp_path / name, size=64)
        assert loaded.dtype == np.uint8
        np.testing.assert_array_equal(loaded, mask)


def test_load_mask_errors_name_the_file(tmp_path):
    bad = tmp_path / "mask_000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(MaskgitError, match="mask_000.png"):
        load_mask(bad)
    with pytest.raises(MaskgitError, match="missing.png"):
        load_mask(tmp_path / "missing.png")
    small = tmp_path / "small.png"
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(small)
    with pytest.raises(MaskgitError, match=r"small\.png.*32x32.*64x64"):
        load_mask(small, size=64)
    assert load_mask(small).shape == (32, 32)


def test_load_mask_16bit_is_scaled_like_images(tmp_path):
    values = np.array([[0, 65535, 30000, 40000]], dtype=np.uint16)  # /257: 0, 255, 117 (hole), 156 (known)
    Image.fromarray(values).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m16.png"), [[0, 255, 0, 255]])
    mask = generate_mask("stroke", np.random.default_rng(3))
    Image.fromarray(mask.astype(np.uint16) * 257).save(tmp_path / "stroke16.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "stroke16.png", size=64), mask)


def test_load_mask_refuses_0_1_masks_but_accepts_all_hole(tmp_path):
    mask = generate_mask("box", np.random.default_rng(0))
    Image.fromarray((mask // 255).astype(np.uint8)).save(tmp_path / "mask_001.png")
    with pytest.raises(MaskgitError) as e:
        load_mask(tmp_path / "mask_001.png")
    assert str(e.value) == (
        f"Mask file {tmp_path / 'mask_001.png'} holds only the values 0 and 1; lab masks use 0 = hole and "
        "255 = known (multiply by 255)."
    )
    Image.fromarray((mask // 255).astype(np.uint16)).save(tmp_path / "mask16_001.png")  # 16-bit 0/1 too
    with pytest.raises(MaskgitError, match="only the values 0 and 1"):
        load_mask(tmp_path / "mask16_001.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "all_hole.png")
    assert (load_mask(tmp_path / "all_hole.png", 64) == 0).all()
    Image.fromarray(mask).save(tmp_path / "lab.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "lab.png"), mask)


def test_load_mask_decompression_bomb_is_one_line(tmp_path):
    import struct
    import zlib

    bomb = tmp_path / "mask_bomb.png"
    Image.new("L", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    with pytest.raises(MaskgitError) as e:
        load_mask(bomb)
    assert "mask_bomb.png" in str(e.value) and "100000x100000" in str(e.value) and "\n" not in str(e.value)


# --- token masks


def test_pixel_to_token_mask_any_vs_majority():
    hole = torch.zeros(1, 8, 8, dtype=torch.bool)
    hole[0, 0, 0] = True  # a single hole pixel in token (0, 0)
    hole[0, 4:8, 0:3] = True  # 12 of 16 pixels in token (1, 0)
    hole[0, 0:2, 4:8] = True  # exactly 8 of 16 in token (0, 1): not more than half
    any_ = pixel_to_token_mask(hole, patch=4, rule="any")
    maj = pixel_to_token_mask(hole, patch=4, rule="majority")
    assert any_.shape == (1, 2, 2) and any_.dtype == torch.bool
    assert any_[0].tolist() == [[True, True], [True, False]]
    assert maj[0].tolist() == [[False, False], [True, False]]
    assert pixel_to_token_mask(hole, rule="any").tolist() == any_.tolist()  # default is the lab rule


def test_pixel_to_token_mask_from_lab_mask_and_checks():
    mask = generate_mask("stroke", np.random.default_rng(0))
    hole = torch.from_numpy(mask == 0).unsqueeze(0)
    tok = pixel_to_token_mask(hole)
    assert tok.shape == (1, 16, 16)
    # the lab rule: two 2x2 average pools of the known mask, kept only where exactly 1 (docs/data.md, "Masks")
    known = torch.from_numpy(mask == 255).float()[None, None]
    pooled = torch.nn.functional.avg_pool2d(torch.nn.functional.avg_pool2d(known, 2), 2)
    assert torch.equal(tok[0], pooled[0, 0] != 1)
    assert pixel_to_token_mask(hole[0]).shape == (16, 16)
    with pytest.raises(MaskgitError, match="divisible"):
        pixel_to_token_mask(torch.zeros(1, 10, 12, dtype=torch.bool))
    with pytest.raises(MaskgitError, match="rule"):
        pixel_to_token_mask(hole, rule="all")


def test_dilate_token_mask_rings():
    mask = torch.zeros(2, 7, 7, dtype=torch.bool)
    mask[0, 3, 3] = True
    mask[1, 0, 6] = True
    assert torch.equal(dilate_token_mask(mask, 0), mask)
    one = dilate_token_mask(mask, 1)
    expected = torch.zeros(2, 7, 7, dtype=torch.bool)
    expected[0, 2:5, 2:5] = True
    expected[1, 0:2, 5:7] = True  # clipped at the corner
    assert torch.equal(one, expected)
    two = dilate_token_mask(mask, 2)
    expected2 = torch.zeros(2, 7, 7, dtype=torch.bool)
    expected2[0, 1:6, 1:6] = True
    expected2[1, 0:3, 4:7] = True
    assert torch.equal(two, expected2)
    assert dilate_token_mask(mask[0], 1).shape == (7, 7)
    with pytest.raises(MaskgitError):
        dilate_token_mask(mask, -1)


def test_transparent_pixels_of_a_mask_file_are_its_holes(tmp_path):
    from maskgit_cli.data.masks import alpha_mask

    alpha = np.full((20, 30), 255, np.uint8)
    alpha[5:10, 5:15] = 0
    alpha[0, 0] = 127  # half transparent counts as a hole, like a gray value below 128
    rgba = np.dstack([np.zeros((20, 30, 3), np.uint8), alpha])  # black everywhere: the gray rule would say all hole
    Image.fromarray(rgba).save(tmp_path / "eraser.png")
    mask = load_mask(tmp_path / "eraser.png", (20, 30))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert (mask == 0).sum() == 5 * 10 + 1 and mask[0, 0] == 0 and mask[15, 20] == 255
    opaque = np.dstack([np.full((20, 30, 3), 255, np.uint8), np.full((20, 30), 255, np.uint8)])
    Image.fromarray(opaque).save(tmp_path / "opaque.png")  # nothing transparent: read as a gray mask, as before
    assert (load_mask(tmp_path / "opaque.png") == 255).all()
    assert alpha_mask(Image.fromarray(opaque)) is None and alpha_mask(Image.new("L", (4, 4))) is None
    with pytest.raises(MaskgitError, match=r"is 30x20 pixels, expected 64x64"):
        load_mask(tmp_path / "eraser.png", 64)


# --- a mask folder is not an image folder


def test_inpaint_refuses_one_folder_for_images_and_masks_or_the_two_swapped(cli, image_dir, tmp_path, file_tree):
    masks = tmp_path / "masks"
    assert cli("masks", image_dir, "-o", masks, "--kind", "box").exit_code == 0
    before = file_tree(tmp_path)
    cases = [
        (image_dir, image_dir, 2, f"--masks {image_dir}: is the --images folder; masks go in a folder of their own"),
        (masks, image_dir, 1, f"--images {masks}: holds masks (two-valued gray, e.g. mask_000.png), not images; the "
         "two folders are swapped"),
        (masks, masks, 2, f"--masks {masks}: is the --images folder; masks go in a folder of their own"),
    ]  # fmt: skip
    for command in ("inpaint", "sweep"):
        ref = ("--ref", image_dir) if command == "sweep" else ()
        for images, mask_dir, code, message in cases:
            r = cli(command, "--images", images, "--masks", mask_dir, *ref, "-o", tmp_path / "o", "--device", "cpu")
            assert (r.exit_code, r.stderr) == (code, f"Error: {message}\n")
    assert file_tree(tmp_path) == before


def test_check_mask_folder_reads_a_few_files(tmp_path, image_dir, make_images):
    masks = tmp_path / "masks"
    write_masks(image_dir, masks, "stroke", 0)
    check_mask_folder(image_dir, masks)  # the right way round
    make_images(tmp_path / "other", 2)
    with pytest.raises(MaskgitError, match=f"^--masks {tmp_path / 'other'}: holds colour images .e.g. image_000.png., "
                       r"not masks \(0 = hole, 255 = known\)$"):  # fmt: skip
        check_mask_folder(image_dir, tmp_path / "other")
    write_masks(image_dir, tmp_path / "masks2", "box", 0)
    with pytest.raises(MaskgitError, match=f"^--images {masks}: holds masks \\(two-valued gray, e.g. mask_000.png\\), "
                       "not images$"):  # fmt: skip
        check_mask_folder(masks, tmp_path / "masks2")  # both hold masks: not "swapped"
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(2):
        Image.fromarray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)).save(gray / f"{i}.png")
    check_mask_folder(gray, masks)  # gray photos are images
    check_mask_folder(image_dir, gray)  # anti-aliased gray masks are masks
    erased = tmp_path / "erased"  # colour PNGs whose transparent pixels are the holes are masks too
    erased.mkdir()
    rgba = np.dstack([np.asarray(Image.open(image_dir / "image_000.png").convert("RGB")), np.full((64, 64), 255)])
    rgba[:8, :8, 3] = 0
    Image.fromarray(rgba.astype(np.uint8)).save(erased / "mask_000.png")
    check_mask_folder(image_dir, erased)


# --- `maskgit masks` never replaces files without --overwrite


def test_masks_refuses_to_replace_masks_without_overwrite(cli, image_dir, tmp_path, file_tree):
    out, masked = tmp_path / "m", tmp_path / "mi"
    assert cli("masks", image_dir, "-o", out, "--masked-out", masked, "--seed", "1").exit_code == 0
    before = file_tree(tmp_path)
    r = cli("masks", image_dir, "-o", out, "--seed", "2")
    assert (r.exit_code, r.stderr) == (1, f"Error: {out} already holds 6 of the files to write (e.g. mask_000.png); "
                                          "pass --overwrite to replace them, or choose another folder\n")  # fmt: skip
    r = cli("masks", image_dir, "-o", tmp_path / "m2", "--masked-out", masked)
    assert r.exit_code == 1 and r.stderr.startswith(f"Error: {masked} already holds 6 of the files to write")
    assert file_tree(tmp_path) == before
    assert cli("masks", image_dir, "-o", out, "--seed", "2", "--overwrite").exit_code == 0
    assert file_tree(tmp_path / "m") != before and sorted(p.name for p in out.iterdir())[0] == "mask_000.png"


def test_masks_and_masked_images_never_share_a_folder(cli, tmp_path, make_images, file_tree):
    images = tmp_path / "images"
    make_images(images, 3, prefix="mask_")  # named like masks: the masked images would replace the masks
    out = tmp_path / "out"
    for overwrite in ((), ("--overwrite",)):
        r = cli("masks", images, "-o", out, "--masked-out", out, *overwrite)
        assert (r.exit_code, r.stderr) == (
            1, f"Error: The masked image folder (--masked-out) {out} must differ from the mask folder.\n"
        )  # fmt: skip
        assert not out.exists()
