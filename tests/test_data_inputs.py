"""What users give -> images and holes (data/inputs.py): the mask convention, holes gray, the size and 0/1 checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.data.inputs import (
    GRAY,
    as_holes,
    as_pixels,
    check_same_size,
    check_zero_one,
    holes_gray,
    pair_inputs,
)
from maskgit_cli.errors import MaskgitError


def _lab_mask(h=20, w=30) -> np.ndarray:
    mask = np.full((h, w), 255, np.uint8)
    mask[5:10, 5:15] = 0
    return mask


def test_every_form_of_one_mask_gives_the_same_holes():
    lab = _lab_mask()
    want = lab == 0
    pixels = np.zeros((20, 30, 3), np.uint8)
    rgba = Image.fromarray(np.dstack([pixels, lab]))  # alpha 0 = hole
    forms = [
        ("mask", lab, None),
        ("mask", Image.fromarray(lab), None),
        ("mask", torch.from_numpy(lab), None),
        ("mask", None, rgba),  # the image's own alpha channel
        ("mask", None, np.dstack([pixels, lab])),
        ("mask", rgba, None),  # a mask image with transparent pixels: its alpha
        ("known", lab == 255, None),
        ("holes", torch.from_numpy(want), None),
    ]
    for keyword, mask, image in forms:
        np.testing.assert_array_equal(as_holes(mask, image, (20, 30), 0, keyword), want, err_msg=keyword)


def test_a_bool_mask_needs_its_keyword_and_a_keyword_needs_a_bool_mask():
    with pytest.raises(MaskgitError, match="mask 3 is a bool mask: say what True means, known=MASK"):
        as_holes(np.ones((4, 4), bool), None, (4, 4), 3)
    with pytest.raises(MaskgitError, match="mask 0: known= takes a bool mask .True = known., got uint8"):
        as_holes(_lab_mask(), None, (20, 30), 0, "known")
    with pytest.raises(MaskgitError, match="give one of mask=, known= and holes=, not known= and holes="):
        pair_inputs(np.zeros((4, 4, 3), np.uint8), known=np.ones((4, 4), bool), holes=np.ones((4, 4), bool))


def test_pair_inputs_one_mask_for_all_or_one_each():
    images = [np.zeros((20, 30, 3), np.uint8), Image.new("RGB", (30, 20))]
    single, pixels, holes = pair_inputs(images, _lab_mask())
    assert not single and [p.shape for p in pixels] == [(20, 30, 3)] * 2 and len(holes) == 2
    single, pixels, holes = pair_inputs(images[0], holes=_lab_mask() == 0)
    assert single and holes[0].sum() == 50
    with pytest.raises(MaskgitError, match="2 images but 3 masks"):
        pair_inputs(images, [_lab_mask()] * 3)
    with pytest.raises(MaskgitError, match="image 0 has no transparent pixels"):
        pair_inputs(images[0])


def test_as_pixels_takes_pil_arrays_and_tensors():
    rgb = (np.arange(20 * 30 * 3) % 256).astype(np.uint8).reshape(20, 30, 3)
    for x in (
        rgb,
        Image.fromarray(rgb),
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
        np.dstack([rgb, rgb[..., 0]]),
    ):
        np.testing.assert_array_equal(as_pixels(x), rgb)
    with pytest.raises(MaskgitError, match="image 2: expected uint8 .H,W,3. pixels, got float32"):
        as_pixels(rgb.astype(np.float32), "image 2")


def test_holes_gray_in_numpy_and_torch():
    rgb = np.full((4, 5, 3), 7, np.uint8)
    holes = np.zeros((4, 5), bool)
    holes[1, 2] = True
    out = holes_gray(rgb, holes)
    assert out is not rgb and (out[1, 2] == GRAY).all() and (rgb == 7).all() and out.sum() == 7 * 57 + GRAY * 3
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    filled = holes_gray(t, torch.from_numpy(holes)[None])
    np.testing.assert_array_equal((filled[0].permute(1, 2, 0) * 255).round().byte().numpy(), out)


def test_one_size_check_and_one_0_1_check():
    with pytest.raises(MaskgitError) as e:
        check_same_size((100, 100), (131, 97, 3), "mask m/b.png", "b.png")
    assert str(e.value) == "mask m/b.png is 100x100 but its image b.png is 97x131: they must be the same size"
    with pytest.raises(MaskgitError, match=r"^the mask is of shape \(4, 4, 3\) but its image is 4x4"):
        check_same_size((4, 4, 3), (4, 4, 3))
    check_same_size((4, 5), (4, 5, 3))
    with pytest.raises(MaskgitError) as e:
        check_zero_one(np.eye(3, dtype=np.uint8), "mask 0", "multiply by 255")
    assert (
        str(e.value)
        == "mask 0 holds only the values 0 and 1; lab masks use 0 = hole and 255 = known (multiply by 255)."
    )
    for fine in (np.zeros((3, 3), np.uint8), np.eye(3, dtype=bool), np.eye(3) * 255, np.eye(3) * 1.5):
        check_zero_one(fine, "mask 0", "")


def test_a_uint8_tensor_is_0_to_255_bit_for_bit():
    rgb = (np.arange(20 * 30 * 3) * 7 % 256).astype(np.uint8).reshape(20, 30, 3)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)  # what torchvision.io.read_image returns
    np.testing.assert_array_equal(as_pixels(chw), rgb)
    np.testing.assert_array_equal(as_pixels(chw.float() / 255), rgb)  # the same image as a float in [0,1]
    with pytest.raises(MaskgitError, match=r"^image 1: a .3,H,W. tensor of pixels is uint8 .0..255. or float"):
        as_pixels(chw.long(), "image 1")


def test_a_float_tensor_outside_0_1_or_not_finite_is_refused():
    rgb = torch.linspace(0, 1, 3 * 8 * 8).reshape(3, 8, 8)
    for bad, message in (
        (rgb * 255, r"^image 0: a float tensor holds pixels in \[0,1\], this one holds values in \[0, 255\]: "
         "divide 0..255 pixels by 255, or pass them as a uint8 tensor$"),
        (rgb - 0.5, r"holds values in \[-0.5, 0.5\]"),
        (rgb.index_put((torch.tensor(0), torch.tensor(1), torch.tensor(2)), torch.tensor(float("nan"))),
         r"^image 0: the tensor holds NaN or infinite pixels$"),
        (rgb.index_put((torch.tensor(2),), torch.tensor(float("inf"))), "NaN or infinite"),
    ):  # fmt: skip
        with pytest.raises(MaskgitError, match=message):
            as_pixels(bad)


def test_a_float_mask_is_exactly_0_and_255_and_finite():
    lab = _lab_mask().astype(np.float32)
    np.testing.assert_array_equal(as_holes(lab, None, (20, 30)), _lab_mask() == 0)  # 0/255 floats: a lab mask
    for bad in (lab / 255 * 0.99, lab / 2, torch.from_numpy(lab / 255 * 0.99)):
        with pytest.raises(MaskgitError) as e:
            as_holes(bad, None, (20, 30))
        assert str(e.value).startswith("mask 0: a float mask holds only 0 (hole) and 255 (known), this one holds ")
        assert "known=(MASK > 0.5)" in str(e.value)
    for bad in (np.full((20, 30), np.nan), np.where(_lab_mask() == 0, np.inf, 255)):
        with pytest.raises(MaskgitError, match=r"^mask 0 holds NaN or infinite values"):
            as_holes(bad, None, (20, 30))
    with pytest.raises(MaskgitError, match=r"^mask 0 holds values in \[0, 256\]"):
        as_holes(np.where(_lab_mask() == 0, 0, 256), None, (20, 30))
    with pytest.raises(MaskgitError, match="only the values 0 and 1"):  # the 0/1 check first, as for integers
        as_holes(lab / 255, None, (20, 30))


def test_pil_images_and_masks_are_read_as_shown():
    shown = np.zeros((30, 20, 3), np.uint8)  # 20 wide, 30 high as shown; the hole drawn on the top rows
    shown[:, :, 0] = np.arange(20, dtype=np.uint8)[None] * 10
    mask = np.full((30, 20), 255, np.uint8)
    mask[:5] = 0
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned back a quarter: shown turned 90 degrees clockwise
    stored = Image.fromarray(np.rot90(shown, -3).copy())  # rot90(k=-3) undoes the viewer's clockwise turn
    stored.info["exif"] = exif.tobytes()
    stored.getexif()[0x0112] = 6
    stored_mask = Image.fromarray(np.rot90(mask, -3).copy())
    stored_mask.getexif()[0x0112] = 6
    single, pixels, holes = pair_inputs(stored, stored_mask)
    np.testing.assert_array_equal(pixels[0], shown)
    np.testing.assert_array_equal(holes[0], mask == 0)
