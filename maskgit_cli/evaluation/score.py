"""PSNR and SSIM of inpainted images against the ground truth, over whole images and over the holes only.

Pairs PRED, REF (and mask) files in sorted file-name order, like the lab (docs/data.md, "The lab's files");
REF may also be the lab's ``test_gt.csv`` (rows in order). Unlike FID, the pairing is one to one, so different
counts are an error. The metrics come from :mod:`maskgit_cli.metrics` (PSNR with peak 255, SSIM as scikit-image
defines it). Hole-only scores use the lab mask's 0 pixels (0 = hole, 255 = known): PSNR over the hole pixels,
SSIM as the mean of the full SSIM map over the hole pixels. Means are over images (PSNR: the mean of per-image dB
values); an image whose mask has no hole is left out of the hole means.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from maskgit_cli.data.images import check_pairs, list_images, load_image
from maskgit_cli.data.inputs import check_same_size
from maskgit_cli.data.masks import load_mask
from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation.references import open_reference, result_files
from maskgit_cli.metrics import psnr, ssim
from maskgit_cli.progress import progress_bar

CHUNK = 128  # images scored per metrics call


def score_folders(pred, ref, masks=None) -> dict[str, Any]:
    """PSNR/SSIM per image pair and their means; with ``masks`` also over hole pixels (mask value 0) only.

    Returns a dict: pred, ref, masks, count, psnr, ssim, and with masks psnr_hole, ssim_hole, hole_fraction,
    images_with_holes; ``images`` lists the per-image values (pred, ref, mask names). Non-finite values:
    PSNR ``inf`` for identical images, ``nan`` hole scores for a mask without holes.
    """
    pred_files = result_files(pred, "PRED folder")
    reference = open_reference(ref, "REF", stats=False)
    ref_names = reference.names
    check_pairs(pred_files, ref_names, f"images in PRED {pred}", f"images in REF {ref}")
    mask_files = None
    if masks is not None:
        mask_files = list_images(masks, "mask folder")
        check_pairs(pred_files, mask_files, f"images in PRED {pred}", f"masks in {masks}")

    rows: list[dict[str, Any]] = []
    n = len(pred_files)
    with progress_bar(n, "score", unit="img") as bar:
        for start in range(0, n, CHUNK):
            idx = range(start, min(start + CHUNK, n))
            a, b, holes = [], [], []
            for i in idx:
                x, y = load_image(pred_files[i]), reference.load(i)
                if x.shape != y.shape:
                    raise MaskgitError(
                        f"{pred_files[i]} is {x.shape[1]}x{x.shape[0]} but its reference {ref_names[i]} is "
                        f"{y.shape[1]}x{y.shape[0]}"
                    )
                if mask_files is not None:
                    m = load_mask(mask_files[i])
                    check_same_size(m.shape, x.shape, f"mask {mask_files[i]}", str(pred_files[i]))
                    holes.append(m == 0)
                a.append(x)
                b.append(y)
            try:
                a_arr, b_arr = np.stack(a), np.stack(b)
            except ValueError:
                raise MaskgitError(f"images of {pred} have different sizes; score needs one size per folder") from None
            try:
                values = {"psnr": psnr(a_arr, b_arr), "ssim": ssim(a_arr, b_arr)}
                if holes:
                    hole = np.stack(holes)
                    values["psnr_hole"] = psnr(a_arr, b_arr, mask=hole)
                    values["ssim_hole"] = ssim(a_arr, b_arr, mask=hole)
                    values["hole_fraction"] = hole.reshape(len(hole), -1).mean(axis=1)
            except ValueError as e:  # e.g. images smaller than SSIM's 7x7 window
                raise MaskgitError(f"cannot score {pred} against {ref}: {e}") from None
            for k, i in enumerate(idx):
                row: dict[str, Any] = {"pred": pred_files[i].name, "ref": Path(ref_names[i]).name}
                if mask_files is not None:
                    row["mask"] = mask_files[i].name
                row.update({key: float(v[k]) for key, v in values.items()})
                rows.append(row)
            bar.advance(len(idx))

    result: dict[str, Any] = {
        "pred": str(pred),
        "ref": str(ref),
        "masks": None if masks is None else str(masks),
        "count": n,
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
    }
    if mask_files is not None:
        with_holes = [r for r in rows if r["hole_fraction"] > 0]
        result.update(
            psnr_hole=float(np.mean([r["psnr_hole"] for r in with_holes])) if with_holes else math.nan,
            ssim_hole=float(np.mean([r["ssim_hole"] for r in with_holes])) if with_holes else math.nan,
            hole_fraction=float(np.mean([r["hole_fraction"] for r in rows])),
            images_with_holes=len(with_holes),
        )
    result["images"] = rows
    return result


def finite_or_none(obj):
    """A copy of ``obj`` with inf/nan floats replaced by None (strict JSON has no Infinity/NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_or_none(v) for v in obj]
    return obj
