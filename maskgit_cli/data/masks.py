"""The lab's inpainting masks (docs/data.md, "Masks"): mask files, and the tokens they make the decoder regenerate.

A *pixel mask* is a ``uint8`` array of shape ``(H, W)`` with values {0, 255}: 0 (black) = hole to inpaint,
255 (white) = known pixel; holes in masked images are gray (128, 128, 128). The convention and the conversion of
every other form (alpha channels, bool masks with ``known=``/``holes=``, tensors) live in
:mod:`maskgit_cli.data.inputs`.

A *token mask* is a torch ``bool`` tensor ``(B, h, w)``: ``True`` = the token must be generated. Each token
covers a ``patch x patch`` pixel block: the VQGAN's downsampling factor (4x4 for the lab's 64x64 images and 16x16
latents; :func:`token_mask_for` takes it from the grid).

Pixel masks are numpy/Pillow, token masks torch. Generated masks (stroke, box, ...) live in
:mod:`maskgit_cli.data.mask_generator`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from maskgit_cli.choices import TOKEN_RULES
from maskgit_cli.data.images import list_images, read_image, to_8bit
from maskgit_cli.data.inputs import (
    HOLE,
    KNOWN,
    alpha_mask,
    check_same_size,
    check_zero_one,
    holes_gray,
    known_pixels,
)
from maskgit_cli.errors import MaskgitError, OptionError, require_file

# --------------------------------------------------------------------------------------------------
# applying / loading masks
# --------------------------------------------------------------------------------------------------


def apply_mask(image_uint8_hwc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return a copy of ``image`` (``uint8`` HWC or HW) with the mask's holes gray 128, like the lab's masked images.

    ``mask`` is a lab mask (``uint8``, 0 = hole, 255 = known; values >= 128 count as known) or a ``bool``
    array with True = known.
    """
    image = np.asarray(image_uint8_hwc)
    known = known_pixels(mask)
    check_same_size(known.shape, image.shape)
    return holes_gray(image, ~known)


def load_mask(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read a lab mask PNG as ``uint8 (H, W)`` with values {0, 255} (pixels >= 128 are known).

    8-bit grayscale is the lab format; RGB/RGBA/P/LA/1-bit files are converted to grayscale first, 16-bit and
    float ones scaled to 8 bits like images (:func:`maskgit_cli.data.images.to_8bit`). A file with transparent
    pixels is read by its alpha channel instead (:func:`~maskgit_cli.data.inputs.alpha_mask`: alpha 0 = hole).
    ``size`` (``int`` for a square or ``(height, width)``) checks the dimensions; ``None`` accepts any size.
    Raises :class:`MaskgitError` naming the file when it is missing, unreadable (a decompression bomb included),
    of the wrong size, or a 0/1 mask (values only 0 and 1, some 1: it would be all hole).
    """
    path = Path(path)
    require_file(path, "Mask file")
    img = read_image(path, "Mask file")
    alpha = alpha_mask(img)
    if alpha is not None:
        _check_size(path, alpha, size)
        return alpha
    try:
        gray = to_8bit(img)
        gray = gray.convert("L") if gray.mode != "L" else gray.copy()
    except (OSError, ValueError) as exc:
        raise MaskgitError(f"Mask file {path}: not a readable image ({type(exc).__name__}: {exc})") from None
    arr = np.asarray(gray, dtype=np.uint8)
    # 0/1 masks (a common way to save binary masks) would read as all hole: check the file's own integer values
    check_zero_one(np.asarray(img) if img.mode.startswith("I") else arr, f"Mask file {path}", "multiply by 255")
    _check_size(path, arr, size)
    return np.where(arr >= 128, KNOWN, HOLE).astype(np.uint8)


def _check_size(path: Path, mask: np.ndarray, size: int | tuple[int, int] | None) -> None:
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if mask.shape != want:
            raise MaskgitError(
                f"Mask file {path} is {mask.shape[1]}x{mask.shape[0]} pixels, expected {want[1]}x{want[0]}."
            )


# --------------------------------------------------------------------------------------------------
# pixel -> token masks (torch)
# --------------------------------------------------------------------------------------------------


def pixel_to_token_mask(hole: torch.Tensor, patch: int = 4, rule: str = "any") -> torch.Tensor:
    """Map a pixel hole mask ``bool (B, H, W)`` (True = hole) to a token mask ``bool (B, H/patch, W/patch)``.

    ``rule="any"`` is the lab rule (docs/data.md, "Masks"): a token must be generated if ANY of its
    ``patch*patch`` pixels is a hole. ``rule="majority"``: only if MORE than half of its pixels are holes.
    A 2-D ``(H, W)`` input gives a 2-D ``(h, w)`` output.
    """
    if rule not in TOKEN_RULES:
        raise MaskgitError(f"Unknown token mask rule {rule!r}; choose one of: {', '.join(TOKEN_RULES)}.")
    squeeze = hole.dim() == 2
    if squeeze:
        hole = hole.unsqueeze(0)
    if hole.dim() != 3:
        raise MaskgitError(f"Pixel mask must have shape (B, H, W), got {tuple(hole.shape)}.")
    b, h, w = hole.shape
    if patch < 1 or h % patch or w % patch:
        raise MaskgitError(f"Mask size {h}x{w} is not divisible by the token patch size {patch}.")
    counts = hole.to(torch.int32).reshape(b, h // patch, patch, w // patch, patch).sum(dim=(2, 4))
    out = counts > 0 if rule == "any" else counts * 2 > patch * patch
    return out[0] if squeeze else out


def dilate_token_mask(mask: torch.Tensor, k: int) -> torch.Tensor:
    """Also mark the ``k`` rings of tokens around masked ones (8-neighbourhood); ``k=0`` returns the mask.

    ``mask`` is ``bool (B, h, w)`` (or ``(h, w)``); the result has the same shape and dtype.
    """
    if k < 0:
        raise MaskgitError(f"Token mask dilation must be >= 0, got {k}.")
    if k == 0:
        return mask.clone()
    squeeze = mask.dim() == 2
    x = mask.unsqueeze(0) if squeeze else mask
    pooled = F.max_pool2d(x.unsqueeze(1).float(), kernel_size=2 * k + 1, stride=1, padding=k).squeeze(1) > 0
    return pooled[0] if squeeze else pooled


def token_mask_for(holes: torch.Tensor, latent: int, rule: str = "any", dilate: int = 0) -> torch.Tensor:
    """Pixel holes (B,H,W) bool -> the tokens to regenerate (B,latent,latent) bool: ``rule`` (any = the lab's),
    then ``dilate`` extra rings (tokens next to a hole were encoded from the gray fill)."""
    patch = holes.shape[-1] // latent
    return dilate_token_mask(pixel_to_token_mask(holes, patch=patch, rule=rule), dilate)


# --------------------------------------------------------------------------------------------------
# telling a mask folder from an image folder
# --------------------------------------------------------------------------------------------------

SAMPLED = 3  # files of each folder read to tell masks from images


def _kind_of(path: Path, alpha: bool) -> str:
    """``mask`` (gray with at most two values; with ``alpha``, also any file with transparent holes), ``color``
    (not gray) or ``gray``."""
    img = read_image(path)
    if alpha and alpha_mask(img) is not None:
        return "mask"
    rgb = np.asarray(to_8bit(img).convert("RGB"))
    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
        return "color"
    return "mask" if len(np.unique(rgb[..., 0])) <= 2 else "gray"


def check_mask_folder(images_dir, masks_dir) -> None:
    """Refuse, in one line, a ``--masks`` folder that is the ``--images`` folder (an :class:`OptionError`), or
    folders whose files say they are swapped: the images are two-valued gray (what masks are) or the masks are in
    colour (what images are). A few files of each are read (:data:`SAMPLED`); folders that cannot be listed are left
    to the readers' own errors."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    if not (images_dir.is_dir() and masks_dir.is_dir()):
        return
    if images_dir.resolve() == masks_dir.resolve():
        raise OptionError(f"--masks {masks_dir}: is the --images folder; masks go in a folder of their own")
    try:
        images, masks = list_images(images_dir)[:SAMPLED], list_images(masks_dir, "mask folder")[:SAMPLED]
        image_kinds, mask_kinds = [_kind_of(p, False) for p in images], [_kind_of(p, True) for p in masks]
    except MaskgitError:
        return  # the readers say what is wrong with a file
    coloured = next((p for p, k in zip(masks, mask_kinds) if k == "color"), None)
    if all(k == "mask" for k in image_kinds):
        swapped = "; the two folders are swapped" if coloured is not None else ""
        raise MaskgitError(
            f"--images {images_dir}: holds masks (two-valued gray, e.g. {images[0].name}), not images{swapped}"
        )
    if coloured is not None:
        raise MaskgitError(
            f"--masks {masks_dir}: holds colour images (e.g. {coloured.name}), not masks (0 = hole, 255 = known)"
        )
