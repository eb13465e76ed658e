"""What ``maskgit sweep`` scores against, and how: the reference (the inputs' ground truth, paired by sorted name, or
FID statistics), FID's network and the reference statistics (found, loaded once), a cell's PSNR/SSIM, the ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskgit_cli.data.images import check_pairs
from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation import fid, inception, references
from maskgit_cli.metrics import psnr, ssim

# ---------------------------------------------------------------------------------------------------------
# the reference


@dataclass
class Reference:
    """--ref as the sweep reads it: its images when they pair up with the inputs, else why they cannot."""

    label: str
    kind: str  # folder | csv | npz
    images: np.ndarray | None = None  # uint8 (N,H,W,3) when it pairs up with the inputs
    count: int | None = None
    note: str | None = None  # why PSNR/SSIM cannot be computed


def open_sweep_reference(ref, inputs: list[Path], size: int, need_pairs: bool, why: str | None = None) -> Reference:
    """--ref for PSNR/SSIM (paired one to one with the inputs, when it can be) and for FID."""
    if need_pairs:  # FID is off: the reference must hold the ground truth of the inputs
        try:
            reference = references.open_reference(ref, "--ref", stats=False)
        except MaskgitError as e:
            raise MaskgitError(f"{e}; FID is off ({why})") from None
    else:
        reference = references.open_reference(ref, "--ref")
    if isinstance(reference, references.RefStats):
        return Reference(str(ref), "npz", note="REF is FID statistics (no images to pair)")
    if reference.size != (size, size):
        h, w = reference.size
        raise MaskgitError(f"--ref {ref} holds {w}x{h} images but the VQGAN makes {size}x{size} images")
    if len(reference) != len(inputs):
        if need_pairs:
            check_pairs(inputs, reference.names, "images in --images", f"images in --ref {ref}")
        note = f"REF has {len(reference)} images, not {len(inputs)}"
        return Reference(str(ref), reference.kind, count=len(reference), note=note)
    return Reference(str(ref), reference.kind, images=reference.load_all(), count=len(reference))


# ---------------------------------------------------------------------------------------------------------
# FID set-up: weights found (or the reason they are not), network loaded once, reference statistics once


@dataclass
class FidSetup:
    """FID's network, loaded once, and the reference statistics every cell is scored against."""

    mode: str
    extractor: Any  # callable (B,3,299,299) -> (B,D), with a ``name``
    weights: str
    stats: Path | None = None  # reference statistics (npz)


class _Named:
    """A loaded Inception network with the extractor id clean-fid statistics files are tagged with."""

    def __init__(self, fn, name: str):
        self.fn, self.name = fn, name

    def __call__(self, x):
        return self.fn(x)


def find_fid_weights(metric: str, mode: str, weights, kid: bool) -> tuple[str | None, str | None]:
    """(weights file or "custom extractor" or None, reason FID is skipped). Never downloads for ``auto``."""
    if metric == "psnr":
        if kid:
            raise MaskgitError("--kid needs FID's features: drop --metric psnr")
        return None, "--metric psnr"
    if fid.FEATURE_EXTRACTOR_OVERRIDE is not None:
        return "custom extractor", None
    if metric == "fid" or weights is not None:
        return str(inception.resolve_inception(mode, weights)), None  # one line naming the file when it is missing
    found = inception.inception_available(mode)
    if found is not None:
        return str(found), None
    spec = inception.INCEPTION_FILES[mode]
    return None, (
        f"no Inception weights for --fid-mode {mode} ({spec.filename} is not at {spec.cache_path()} and "
        f"${inception.ENV_INCEPTION} is unset)"
    )


def load_fid(weights: str, mode: str, dev, ref: Reference, ref_path, out: Path, kid: bool, batch_size, workers):
    """The network of ``weights`` and the reference statistics: a REF .npz as it is (checked against the mode and
    --kid), else computed once from the reference into ``out``/ref_fid_stats.npz."""
    if weights == "custom extractor":
        fn = fid.FEATURE_EXTRACTOR_OVERRIDE
    else:
        fn = _Named(inception.load_inception(mode, weights, dev), inception.INCEPTION_FILES[mode].extractor)
    plan = FidSetup(mode, fn, weights)
    if ref.kind == "npz":
        stats = references.load_stats(ref_path)
        if stats.mode is not None and stats.mode != mode:
            raise MaskgitError(f"--ref {ref_path} holds --mode {stats.mode} statistics but --fid-mode is {mode}")
        if kid and stats.features is None:
            raise MaskgitError(f"--ref {ref_path} holds no features (made with --no-features): --kid needs them")
        plan.stats = Path(ref_path)
        return plan
    plan.stats = out / "ref_fid_stats.npz"
    source = ref.images if ref.images is not None else ref_path
    fid.make_stats(source, plan.stats, mode, dev, batch_size, workers, feature_extractor=fn, save_features=kid)
    return plan


def _mean(values) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def pair_scores(pred: np.ndarray, ref: np.ndarray, holes: np.ndarray) -> dict[str, float | None]:
    with_holes = holes.reshape(len(holes), -1).any(axis=1)
    scores = {"psnr": _mean(psnr(pred, ref)), "ssim": _mean(ssim(pred, ref))}
    if with_holes.any():
        p, r, h = pred[with_holes], ref[with_holes], holes[with_holes]
        scores.update(psnr_hole=_mean(psnr(p, r, mask=h)), ssim_hole=_mean(ssim(p, r, mask=h)))
    else:
        scores.update(psnr_hole=None, ssim_hole=None)
    return scores


def rank_cells(
    rows, fid: FidSetup | None, fid_mode: str, kid: bool, reference: Reference, fid_reason
) -> tuple[str, dict, str]:
    """(the ranking metric, the best row, one line saying how the cells were ranked); marks every row's "best"."""
    if fid is not None:
        key, best = "fid", min(rows, key=lambda r: r["fid"])
        if fid_mode == "legacy_pytorch" and fid.weights != "custom extractor":
            lab = "comparable to the lab's numbers"
        elif fid_mode == "legacy_pytorch":
            lab = "a custom feature extractor: not comparable to the lab's numbers"
        else:
            lab = "not comparable to the lab's numbers: use --fid-mode legacy_pytorch for that"
        note = f"metric: FID{' and KID' if kid else ''} (--fid-mode {fid_mode}, weights {fid.weights}; {lab})"
    else:
        key = "psnr_hole" if any(r["psnr_hole"] is not None for r in rows) else "psnr"
        best = max(rows, key=lambda r: -math.inf if r[key] is None else r[key])
        label = "hole PSNR/SSIM" if key == "psnr_hole" else "PSNR/SSIM (no holes in the masks)"
        note = f"metric: {label} against {reference.label}; FID skipped: {fid_reason}"
        if kid:
            note += " (so no KID either)"
    for r in rows:
        r["best"] = r is best
    return key, best, note + _ties(rows, best, key)


def _ties(rows, best: dict, key: str) -> str:
    """The note's words on cells whose score equals the best's exactly (a cell that reuses another's images,
    ``same_as``, is not a tie of its own): the first in grid order is the one marked best."""
    tied = [r for r in rows if r is not best and not r.get("same_as") and r[key] is not None and r[key] == best[key]]
    if not tied:
        return ""
    names = ", ".join(f"{r['schedule']} T{r['total_iter']} S{r['sweet_spot']}" for r in [best, *tied])
    return f"; {len(tied) + 1} cells tie for the best {key} ({names}): the first is marked best"
