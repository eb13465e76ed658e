"""What users give -> images and hole masks: the one home of the mask convention.

The convention, the same for files, arrays, the Python API and the web page:

======================================================  ==================  ===================
a mask given as                                         hole                known
======================================================  ==================  ===================
a lab mask: uint8 (H,W), a grayscale PNG                0 (black; < 128)    255 (white; >= 128)
an image's alpha channel: a PNG, a PIL image, (H,W,4)   alpha 0 (< 128)     alpha 255
a bool mask, with its keyword                           ``holes=`` True     ``known=`` True
======================================================  ==================  ===================

A bool mask says nothing by itself, so it comes with the keyword that says what True means (``known=`` or
``holes=``); one given as ``mask=`` is refused. Inside the package holes are bool (H,W) arrays, True = hole, and
the model sees them gray (:data:`GRAY`, :func:`holes_gray`), as the lab's masked images do.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from maskgit_cli.data.images import to_rgb, to_uint8, upright
from maskgit_cli.errors import MaskgitError

HOLE = 0
KNOWN = 255
GRAY = 128  # fill of holes in the lab's masked images (docs/data.md, "Masks")


def known_pixels(mask: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)`` array, True where the pixel is known (lab mask value >= 128; bool masks as-is)."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return mask
    return mask >= 128


def alpha_mask(img) -> np.ndarray | None:
    """The alpha channel of a PIL image as a lab mask ``uint8 (H, W)`` {0, 255} (alpha >= 128 = known, so alpha 0
    = hole, the convention of image editors' erasers), or None when the image has no transparency at all."""
    if "A" not in img.getbands() and "transparency" not in img.info:
        return None
    alpha = np.asarray(img.convert("RGBA"))[..., 3]
    if alpha.min() == 255:
        return None
    return np.where(alpha >= 128, KNOWN, HOLE).astype(np.uint8)


def holes_gray(images, holes):
    """``images`` with their ``holes`` (True = hole) gray: what inpainting encodes, and how an input is shown.

    numpy uint8 images (H,W,3), (H,W) or (B,H,W,3) with holes of their (B,)H,W: a copy, holes 128. torch float
    images (B,3,H,W) in [0,1] with holes (B,H,W): holes 128/255 (what ``tokenize --masked-copies`` encodes too).
    """
    if isinstance(images, np.ndarray):
        out = images.copy()
        out[holes] = GRAY
        return out
    return images.masked_fill(holes[:, None].expand_as(images), GRAY / 255.0)


def _size(shape) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) == 2 else f"of shape {tuple(shape)}"


def check_same_size(mask_shape, image_shape, mask: str = "the mask", image: str = "") -> None:
    """A mask (H,W) must have its image's size (the image's (H,W[,C]) shape): one wording everywhere, naming the
    mask and the image (``mask``: e.g. "mask 0" or "mask masks/a.png"; ``image``: e.g. "a.png", or none)."""
    if tuple(mask_shape) != tuple(image_shape[:2]):
        its = f"its image {image}" if image else "its image"
        raise MaskgitError(
            f"{mask} is {_size(mask_shape)} but {its} is {_size(image_shape[:2])}: they must be the same size"
        )


def check_zero_one(values: np.ndarray, name: str, hint: str) -> None:
    """Refuse a mask that holds only 0 and 1 (a common way to save binary masks): read as a lab mask it would be all
    hole. ``name`` names the mask, ``hint`` says how to give it instead."""
    values = np.asarray(values)
    if values.dtype != np.bool_ and values.size and values.max() == 1 and values.min() >= 0:
        raise MaskgitError(f"{name} holds only the values 0 and 1; lab masks use 0 = hole and 255 = known ({hint}).")


def as_pixels(x, name: str = "image 0") -> np.ndarray:
    """One input image as uint8 (H,W,3): a PIL image (any mode; transparency on white; as viewers show it, EXIF
    orientation applied), a uint8 (H,W,3) or (H,W,4) array, or a (3,H,W) tensor: uint8 0..255 (what
    ``torchvision.io.read_image`` returns; known pixels bit for bit) or float in [0,1]. A float tensor with values
    outside [0,1] (e.g. 0..255) or NaN/inf pixels is refused: there is no safe guess of what it means."""
    if isinstance(x, Image.Image):
        return np.array(to_rgb(upright(x)))
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] not in (3, 4):
            raise MaskgitError(f"{name}: expected uint8 (H,W,3) pixels, got {x.dtype} {x.shape}")
        return np.ascontiguousarray(x[..., :3])
    if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[0] == 3:
        return _tensor_pixels(x.detach(), name)
    raise MaskgitError(f"{name}: expected a PIL image, a uint8 (H,W,3) array or a (3,H,W) tensor")


def _tensor_pixels(x: torch.Tensor, name: str) -> np.ndarray:
    """A (3,H,W) tensor -> uint8 (H,W,3): uint8 as is (0..255), float in [0,1] rounded (:func:`to_uint8`)."""
    if x.dtype == torch.uint8:
        return x.permute(1, 2, 0).cpu().numpy().copy()
    if not x.is_floating_point():
        raise MaskgitError(f"{name}: a (3,H,W) tensor of pixels is uint8 (0..255) or float ([0,1]), got {x.dtype}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise MaskgitError(f"{name}: the tensor holds NaN or infinite pixels")
    low, high = x.min().item(), x.max().item()
    if low < 0 or high > 1:
        raise MaskgitError(
            f"{name}: a float tensor holds pixels in [0,1], this one holds values in [{low:g}, {high:g}]: "
            "divide 0..255 pixels by 255, or pass them as a uint8 tensor"
        )
    return to_uint8(x[None])[0]


def as_holes(mask, image, shape: tuple[int, int], i: int = 0, keyword: str = "mask") -> np.ndarray:
    """Mask ``i`` -> holes, bool (H,W), True = hole, for its image of ``shape`` (H,W) (errors name "mask i").

    ``keyword`` says what the mask is: ``mask`` a lab mask (0 = hole, 255 = known; an array, tensor or PIL image,
    whose alpha channel is read if it has transparent pixels), or None: the alpha channel of ``image`` (a PIL image
    or an (H,W,4) array); ``known`` or ``holes`` a bool mask (True = known, True = hole).
    """
    name = f"mask {i}"
    if keyword != "mask":
        values = _bool_mask(mask, name, keyword)
        check_same_size(values.shape, shape, name)
        return ~values if keyword == "known" else values
    if mask is None:
        mask = _image_alpha(image, f"image {i}")
    if isinstance(mask, Image.Image):
        mask = upright(mask)
        alpha = alpha_mask(mask)
        mask = alpha if alpha is not None else np.asarray(mask.convert("L"))
    values = _numpy(mask)
    if values.dtype == np.bool_:
        raise MaskgitError(
            f"{name} is a bool mask: say what True means, known=MASK (True = known) or holes=MASK (True = hole)"
        )
    check_same_size(values.shape, shape, name)
    check_zero_one(values, name, "multiply by 255, or pass known=(MASK == 1)")
    check_lab_values(values, name)
    return ~known_pixels(values)


def check_lab_values(values: np.ndarray, name: str) -> None:
    """A lab mask given as an array or tensor holds what a lab mask file can: integers 0..255 (>= 128 = known), or,
    as floats, exactly 0 (hole) and 255 (known). A float mask with other values (a [0,1] or [0,0.99] mask, a
    resized one) or NaN/inf would silently read as (nearly) all hole: refused, saying how to give it."""
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise MaskgitError(f"{name} holds NaN or infinite values; lab masks use 0 = hole and 255 = known")
        if not np.isin(values, (HOLE, KNOWN)).all():
            raise MaskgitError(
                f"{name}: a float mask holds only 0 (hole) and 255 (known), this one holds values in "
                f"[{values.min():g}, {values.max():g}]: pass known=(MASK > 0.5) for a [0,1] mask, or a uint8 lab mask"
            )
    elif values.dtype.kind in "iu":
        if values.size and (values.min() < 0 or values.max() > 255):
            raise MaskgitError(
                f"{name} holds values in [{values.min()}, {values.max()}]; lab masks use 0 = hole and 255 = known"
            )
    else:
        raise MaskgitError(f"{name}: a lab mask holds numbers 0 = hole and 255 = known, got {values.dtype}")


def pair_inputs(image, mask=None, known=None, holes=None) -> tuple[bool, list[np.ndarray], list[np.ndarray]]:
    """:meth:`~maskgit_cli.decoding.pipeline.Inpainter.__call__`'s inputs -> (one image given, pixels uint8 (H,W,3)
    per image, holes bool (H,W) per image). At most one of ``mask`` (lab), ``known`` and ``holes`` (bool) is given,
    none: each image's alpha channel; one mask per image, or one for all."""
    given = {k: v for k, v in (("mask", mask), ("known", known), ("holes", holes)) if v is not None}
    if len(given) > 1:
        raise MaskgitError(f"give one of mask=, known= and holes=, not {' and '.join(k + '=' for k in given)}")
    keyword, value = next(iter(given.items()), ("mask", None))
    single = not isinstance(image, (list, tuple))
    images = [image] if single else list(image)
    masks = value if isinstance(value, (list, tuple)) else [value] * len(images)
    if len(masks) != len(images):
        raise MaskgitError(f"{len(images)} images but {len(masks)} masks: give one mask per image")
    pixels = [as_pixels(x, f"image {i}") for i, x in enumerate(images)]
    hole_masks = [as_holes(m, x, p.shape[:2], i, keyword) for i, (m, x, p) in enumerate(zip(masks, images, pixels))]
    return single, pixels, hole_masks


def _numpy(mask) -> np.ndarray:
    """An array or a tensor (on any device) as a numpy array."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask)


def _bool_mask(mask, name: str, keyword: str) -> np.ndarray:
    """A mask given as ``known=`` or ``holes=``: it must be bool, whose True the keyword explains."""
    values = _numpy(mask)
    if values.dtype != np.bool_:
        meaning = "known" if keyword == "known" else "hole"
        raise MaskgitError(
            f"{name}: {keyword}= takes a bool mask (True = {meaning}), got {values.dtype}; a lab mask (0 = hole, "
            "255 = known) or a PIL image goes in mask="
        )
    return values


def _image_alpha(image, name: str) -> np.ndarray:
    """The alpha channel of a PIL image or an (H,W,4) array as a lab mask; an error when nothing is transparent."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 4:
        image = Image.fromarray(image, "RGBA")
    alpha = alpha_mask(upright(image)) if isinstance(image, Image.Image) else None
    if alpha is None:
        raise MaskgitError(f"{name} has no transparent pixels: give a mask (0 = hole), or make the holes transparent")
    return alpha
