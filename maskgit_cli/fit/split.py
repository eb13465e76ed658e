"""What `maskgit fit` trains and validates on: IMAGES and ``--val``, or a validation split held out of IMAGES by
itself, and the validation masks.

The split is deterministic and stable as a folder grows: an image is held out when the sha256 of its file name,
read as a fraction of 2**64, is below :data:`VAL_FRACTION` (at least one image: the lowest hash). The two parts are
folders of symbolic links under MODEL/runs/data/ (train/, val/), which the trainers read as any image folder.

IMAGES may be several folders (e.g. the training images of three emoji styles): their images are then linked into
one folder, each under its folder's position and its own name (``0-image_000.png``, ``1-image_000.png``), so the same
name in two folders is two images.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from maskgit_cli.data.images import check_pairs, list_images
from maskgit_cli.data.mask_generator import generate_mask, mask_name, mask_rng
from maskgit_cli.data.masks import load_mask
from maskgit_cli.errors import MaskgitError, OptionError
from maskgit_cli.fit.settings import VAL_MASKS
from maskgit_cli.model_card import files_sha256

VAL_FRACTION = 0.10
SPLIT_RULE = "10% of IMAGES held out by the sha256 of the file name (at least 1 image)"


@dataclass
class Split:
    """The training and validation images of a fit, and the masks validation inpaints."""

    train: Path  # an image folder
    val: Path
    val_masks: Path  # lab masks at the model's resolution, paired with the validation images by sorted name
    train_images: int
    val_images: int
    rule: str  # how the validation images were chosen
    files_sha256: str  # of the training images' names (the card's trained_on.files_sha256)

    def card(self) -> dict:
        """What the card and fit.json say of the split."""
        return {"train_images": self.train_images, "val_images": self.val_images, "rule": self.rule}


def name_fraction(name: str) -> float:
    """The file name's sha256 as a number in [0, 1)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:16], 16) / 2**64


def held_out(names: list[str], fraction: float = VAL_FRACTION) -> list[str]:
    """The names held out for validation: those whose :func:`name_fraction` is below ``fraction``, at least one."""
    if len(names) < 2:
        raise MaskgitError(f"{len(names)} image(s): a fit needs at least 2 (one to train on, one to validate)")
    val = [n for n in names if name_fraction(n) < fraction] or [min(names, key=name_fraction)]
    if len(val) == len(names):
        val = val[:1]
    return val


def check_folders(folders: list[Path], val=None) -> None:
    """IMAGES folders each given once, and ``val`` (``--val``) none of them: a fit that validated on the images it
    trains on would keep its most overfit checkpoints, with no word of it."""
    resolved = [Path(f).resolve() for f in folders]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise MaskgitError(f"IMAGES {folders[i]}: given twice")
    if val is not None and Path(val).resolve() in resolved:
        raise OptionError(
            f"--val {val}: is one of the IMAGES folders, and a fit must not validate on images it trains on: give "
            "a folder of other images, or leave --val out to hold a tenth of IMAGES out"
        )


def input_files(folders: list[Path]) -> dict[str, Path]:
    """The images of IMAGES, by the name the fit knows them by: their own name in one folder; with several folders,
    ``{position}-{name}`` (keyed by folder, so equal names in two folders do not collide)."""
    if len(folders) == 1:
        return {f.name: f for f in list_images(folders[0], "IMAGES")}
    check_folders(folders)
    return {f"{i}-{f.name}": f for i, folder in enumerate(folders) for f in list_images(folder, "IMAGES")}


def make_split(images: list[Path], val, val_masks, folder: Path, resolution: int) -> Split:
    """The split of a fit into ``folder`` (MODEL/runs/data): the IMAGES folders and ``val`` as given, or ``val``
    held out of IMAGES (:func:`held_out`); validation masks ``val_masks`` or generated at ``resolution``
    (:data:`VAL_MASKS`)."""
    files = input_files(images)
    if val is not None:
        train_dir, val_dir, rule = Path(images[0]), Path(val), f"--val {val}"
        if len(images) > 1:
            train_dir = folder / "train"
            _links(train_dir, files)
        train_names = list(files)
        val_files = list_images(val_dir, "--val")
    else:
        chosen = set(held_out(list(files)))
        train_names = [n for n in files if n not in chosen]
        train_dir, val_dir, rule = folder / "train", folder / "val", SPLIT_RULE
        _links(train_dir, {n: f for n, f in files.items() if n not in chosen})
        _links(val_dir, {n: f for n, f in files.items() if n in chosen})
        val_files = sorted(chosen)  # the links' names
    val_count = len(val_files)
    if val_masks is None:
        val_masks = folder / "val_masks"
        write_val_masks(val_masks, val_count, resolution)
    else:  # checked now, not when the transformer stage reads them an hour from now
        masks = list_images(val_masks, "--val-masks")
        where = f"--val {val}" if val is not None else "IMAGES held out for validation"
        check_pairs(masks, val_files, f"masks in --val-masks {val_masks}", f"validation images ({where})")
        for mask in masks:
            load_mask(mask, resolution)
    return Split(train_dir, val_dir, Path(val_masks), len(train_names), val_count, rule, files_sha256(train_names))


def _links(folder: Path, files: dict[str, Path]) -> None:
    """``folder`` made afresh, holding a symbolic link to each of ``files`` (name -> file) under its name."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, f in files.items():
        os.symlink(f.resolve(), folder / name)


def write_val_masks(folder: Path, count: int, resolution: int) -> None:
    """``count`` generated lab masks (:data:`VAL_MASKS`) of ``resolution`` pixels into ``folder``, made afresh."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        mask = generate_mask(VAL_MASKS["kind"], mask_rng(VAL_MASKS["seed"], i), size=resolution)
        Image.fromarray(mask).save(folder / mask_name(i, count))
