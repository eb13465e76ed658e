"""A folder of images to inpaint, each paired with its holes: `maskgit inpaint`'s and `sweep`'s inputs.

The holes come from a mask folder (paired by sorted file name, the lab's way), from generated masks
(``--mask-kind``, drawn at each image's size), or from each image's own alpha channel (alpha 0 = hole); the mask
convention is :mod:`maskgit_cli.data.inputs`'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from maskgit_cli.choices import MASK_KINDS, check_choice
from maskgit_cli.data.images import check_pairs, list_images, read_image, to_rgb
from maskgit_cli.data.inputs import HOLE, alpha_mask, check_same_size
from maskgit_cli.data.mask_generator import generate_mask_for, mask_rng
from maskgit_cli.data.masks import load_mask
from maskgit_cli.errors import MaskgitError


class InpaintInputs(torch.utils.data.Dataset):
    """(image uint8 (H,W,3), holes bool (H,W), index) of a folder's images, as they are: masks from a folder (paired
    by sorted name, each of its image's size), generated masks (``mask_kind``, drawn at the image's size), or, with
    neither, each image's own alpha channel (alpha 0 = hole). ``size``: the model's; with ``any_size`` False every
    image must have it. Errors name the files."""

    def __init__(
        self,
        images_dir,
        masks_dir=None,
        mask_kind: str | None = None,
        mask_seed: int = 0,
        size: int = 64,
        any_size: bool = True,
    ):
        self.files = list_images(images_dir, "image folder")
        self.size, self.mask_kind, self.mask_seed, self.any_size = size, mask_kind, mask_seed, any_size
        if masks_dir is not None and mask_kind is not None:
            raise MaskgitError("give --masks DIR or --mask-kind KIND, not both")
        if mask_kind is not None:
            check_choice(mask_kind, MASK_KINDS, "--mask-kind")
        self.masks = None
        if masks_dir is not None:
            self.masks = list_images(masks_dir, "mask folder")
            check_pairs(self.files, self.masks, f"images in {images_dir}", f"masks in {masks_dir}")
        _check_output_names(self.files, images_dir)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        img = read_image(path)
        pixels = np.asarray(to_rgb(img), dtype=np.uint8).copy()
        h, w = pixels.shape[:2]
        if not self.any_size and (h, w) != (self.size, self.size):
            raise MaskgitError(f"{path}: image is {w}x{h}, but the model inpaints {self.size}x{self.size} images")
        return pixels, self._mask(i, img, h, w) == HOLE, i

    def _mask(self, i: int, img, h: int, w: int) -> np.ndarray:
        """The lab mask of image ``i``: its mask file, a generated one, or its alpha channel."""
        if self.masks is not None:
            mask = load_mask(self.masks[i])
            check_same_size(mask.shape, (h, w), f"mask {self.masks[i]}", self.files[i].name)
            return mask
        if self.mask_kind is not None:
            return generate_mask_for(self.mask_kind, mask_rng(self.mask_seed, i), h, w)
        mask = alpha_mask(img)
        if mask is None:
            raise MaskgitError(
                f"{self.files[i]}: no --masks, no --mask-kind, and the image has no transparent pixels to read as "
                "holes (alpha 0 = hole)"
            )
        return mask


def _check_output_names(files: list[Path], folder) -> None:
    """Results are named after the inputs' stems: two inputs with one stem would overwrite each other."""
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise MaskgitError(
                f"{stems[f.stem].name} and {f.name} in {folder} would both be written as {f.stem}.png: rename one"
            )
        stems[f.stem] = f
