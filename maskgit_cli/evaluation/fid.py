"""FID and KID of an image set against a reference, with clean-fid underneath (docs/fid.md).

Sources of images
    PRED is a folder of images (or, from Python, a uint8 array (N,H,W,3)). REF is a folder, a statistics
    ``.npz`` written by :func:`make_stats` (``maskgit fid-stats``), or the lab's ``test_gt.csv`` (a header row,
    then one row of H*W*3 values 0-255 in HWC order per image, docs/data.md, "The lab's files"). Folders are read
    like the rest of maskgit: sorted, not recursive, transparency composited onto white (clean-fid itself globs
    recursively and drops alpha; for the RGB images of the lab both decoders give the same pixels).

Modes
    ``clean`` (default): clean-fid's TorchScript Inception and its anti-aliased PIL bicubic resize to 299.
    ``legacy_pytorch``: pytorch-fid's Inception weights and bilinear ``F.interpolate`` resize to 299 - the
    network the lab's FIDs were computed with (docs/fid.md, "Modes"), so the mode to compare with them.
    The two modes give different numbers; every result names its mode. The resize is always clean-fid's
    ``build_resizer(mode)``; features come from ``cleanfid.fid.get_batch_features`` batch by batch and the
    distance from ``cleanfid.fid.frechet_distance`` / ``kernel_distance``.

Inception weights
    Found (never downloaded behind a test's back) by :mod:`maskgit_cli.evaluation.inception`; PRED and REF are
    opened by :mod:`maskgit_cli.evaluation.references`.

Counts and sizes
    FID compares distributions, so PRED and REF may hold different numbers of images: that is allowed with a
    warning (in the result's ``warnings`` and on stderr). All images of a set must have one size, and PRED and
    REF the same size (for an inpainting evaluation a different size means the wrong folder); both are errors.
    ``maskgit score``, which pairs images one to one, makes a count mismatch an error.

Tests inject a small feature extractor (``feature_extractor=`` or the module-level
:data:`FEATURE_EXTRACTOR_OVERRIDE`), never the real Inception.

torch, torchvision, clean-fid and the modules that import torch (data.images, runtime, weights) are imported inside
the functions that use them: a wrong path, size or Inception file is reported at once, before they load (seconds).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskgit_cli._version import __version__
from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation.inception import inception_file, load_inception, resolve_inception
from maskgit_cli.evaluation.references import ImageSet, RefStats, open_images, open_reference
from maskgit_cli.progress import log, progress_bar

FEATURE_EXTRACTOR_OVERRIDE: Callable | None = None
"""When set, used instead of Inception wherever no ``feature_extractor`` is passed (tests set it with
monkeypatch so that the CLI runs offline). A callable: float32 (B,3,299,299) in [0,255] -> (B,D) features;
an optional ``name`` attribute identifies it in results and statistics files."""

STATS_FORMAT = "maskgit-fid-stats-1"


# ----------------------------------------------------------------------------------------------------------
# features


def _dataset(images: ImageSet, fn_resize):
    import torch  # lazy: the module docstring says why
    import torchvision

    from maskgit_cli.data.images import load_image

    to_tensor = torchvision.transforms.ToTensor()

    class Resized(torch.utils.data.Dataset):
        """Like cleanfid.utils.ResizeDataset, over maskgit's loader; a bad file yields its error message."""

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            if images.files is not None:
                try:
                    img = load_image(images.files[i])
                except MaskgitError as e:
                    return str(e)
                if img.shape[:2] != images.size:
                    h, w = images.size
                    return f"{images.files[i]}: image is {img.shape[1]}x{img.shape[0]}, expected {w}x{h}"
            else:
                img = images.array[i]
            resized = fn_resize(img)
            if resized.dtype == np.uint8:  # as ResizeDataset: ToTensor scales uint8 to [0,1]
                return to_tensor(np.array(resized)) * 255
            return to_tensor(resized)

    return Resized()


def _collate(items):
    import torch  # lazy: the module docstring says why

    for item in items:
        if isinstance(item, str):
            return item
    return torch.stack(items)


def _resizer(mode: str):
    from cleanfid.resize import build_resizer  # lazy: the module docstring says why

    with warnings.catch_warnings():  # clean-fid's PyTorch resizer sets a global "ignore" filter
        return build_resizer(mode)


def extract_features(
    images: ImageSet,
    model: Callable,
    mode: str = "clean",
    device=None,
    batch_size: int = 32,
    num_workers: int | None = None,
) -> np.ndarray:
    """(N,D) float features of ``images``: clean-fid's resize for ``mode``, then ``model`` batch by batch."""
    import torch  # lazy: the module docstring says why
    from cleanfid.fid import get_batch_features

    from maskgit_cli.data.images import default_workers

    device = torch.device("cpu") if device is None else torch.device(device)
    loader = torch.utils.data.DataLoader(
        _dataset(images, _resizer(mode)),
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=default_workers() if num_workers is None else num_workers,
        collate_fn=_collate,
    )
    feats = []
    with progress_bar(len(images), f"features {Path(images.label).name}") as bar:
        for batch in loader:
            if isinstance(batch, str):
                raise MaskgitError(batch)
            out = get_batch_features(batch, model, device)
            if out.ndim != 2 or len(out) != len(batch):
                raise MaskgitError(f"feature extractor returned shape {out.shape} for a batch of {len(batch)}")
            feats.append(out)
            bar.advance(len(batch))
    feats = np.concatenate(feats)
    if not np.isfinite(feats).all():
        raise MaskgitError(f"{images.label}: the feature extractor produced NaN/inf features")
    return feats


def _extractor_name(fn: Callable) -> str:
    return str(getattr(fn, "name", None) or "custom extractor")


@dataclass
class _Extractor:
    fn: Callable | None  # None until load() for Inception
    name: str
    weights: str  # path of the weights file, or "custom extractor"
    mode: str = "clean"

    def load(self, device) -> Callable:
        if self.fn is None:
            self.fn = load_inception(self.mode, self.weights, device)
        return self.fn


def _find_extractor(mode, feature_extractor, inception) -> _Extractor:
    """Resolve the extractor (its weights file) before any image is read: a missing file is reported at once.

    The network itself is loaded later (:meth:`_Extractor.load`), once the inputs are known to be good.
    """
    fn = feature_extractor if feature_extractor is not None else FEATURE_EXTRACTOR_OVERRIDE
    if fn is not None:
        return _Extractor(fn, _extractor_name(fn), "custom extractor", mode)
    spec = inception_file(mode)
    return _Extractor(None, spec.extractor, str(resolve_inception(mode, inception)), mode)


def _resolve_device(device):
    import torch  # lazy: the module docstring says why

    from maskgit_cli.runtime import resolve_device

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    return resolve_device(str(device))


# ----------------------------------------------------------------------------------------------------------
# statistics files


def _mu_sigma(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # exactly as cleanfid.fid.fid_from_feats
    return np.mean(feats, axis=0), np.cov(feats, rowvar=False)


def make_stats(
    source,
    out_npz: str | Path,
    mode: str = "clean",
    device=None,
    batch_size: int = 32,
    num_workers: int | None = None,
    feature_extractor: Callable | None = None,
    inception: str | Path | None = None,
    save_features: bool = True,
) -> dict[str, Any]:
    """Write reference statistics of a folder (or lab csv) for ``maskgit fid PRED ref.npz``.

    The file holds mu, sigma, count, mode, the feature extractor's id, the image size and (unless
    ``save_features`` is off) the features themselves, which KID needs.
    """
    from maskgit_cli.weights import atomic_path  # lazy: the module docstring says why

    inception_file(mode)
    extractor = _find_extractor(mode, feature_extractor, inception)
    images = open_images(source, "image folder")
    if len(images) < 2:
        raise MaskgitError(f"{images.label}: FID statistics need at least 2 images, found {len(images)}")
    dev = _resolve_device(device)
    feats = extract_features(images, extractor.load(dev), mode, dev, batch_size, num_workers)
    mu, sigma = _mu_sigma(feats)
    arrays = {
        "format": np.array(STATS_FORMAT),
        "mu": mu,
        "sigma": sigma,
        "count": np.array(len(feats)),
        "mode": np.array(mode),
        "feature_extractor": np.array(extractor.name),
        "image_size": np.array(images.size),
        "source": np.array(images.label),
        "maskgit_version": np.array(__version__),
    }
    if save_features:
        arrays["features"] = feats
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return {
        "path": str(out_npz),
        "source": images.label,
        "count": len(feats),
        "mode": mode,
        "feature_extractor": extractor.name,
        "feature_dim": int(feats.shape[1]),
        "image_size": list(images.size),
        "weights": extractor.weights,
        "features_saved": save_features,
    }


# ----------------------------------------------------------------------------------------------------------
# FID / KID


def _frechet(mu1, sigma1, mu2, sigma2) -> float:
    from cleanfid.fid import frechet_distance  # lazy: the module docstring says why

    try:
        # it prints a note on singular products (keep stdout for results); newer SciPy warns about its sqrtm call
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            value = float(frechet_distance(mu1, sigma1, mu2, sigma2))
    except ValueError as e:
        raise MaskgitError(f"FID could not be computed: {e}") from None
    return max(value, 0.0)  # tiny negative values are rounding noise of identical sets


def _kid(feats1: np.ndarray, feats2: np.ndarray, seed: int = 0) -> float:
    from cleanfid.fid import kernel_distance  # lazy: the module docstring says why

    state = np.random.get_state()  # kernel_distance draws subsets from numpy's global RNG: make it repeatable
    np.random.seed(seed)
    try:
        return float(kernel_distance(feats1, feats2))
    finally:
        np.random.set_state(state)


def compute_fid(
    pred,
    ref,
    mode: str = "clean",
    device=None,
    batch_size: int = 32,
    num_workers: int | None = None,
    kid: bool = False,
    feature_extractor: Callable | None = None,
    inception: str | Path | None = None,
) -> dict[str, Any]:
    """FID (and KID) of PRED (folder or uint8 (N,H,W,3) array) against REF (folder, stats .npz, lab csv, array).

    Returns a dict: fid, kid (when asked), mode, comparable_to_lab, pred/ref and their counts, ref_kind,
    image_size, feature_extractor, feature_dim, weights (file used, or "custom extractor"), warnings.
    """
    inception_file(mode)
    extractor = _find_extractor(mode, feature_extractor, inception)
    dev = _resolve_device(device)
    pred_set = open_images(pred, "PRED folder")
    reference = open_reference(ref)
    warnings: list[str] = []

    if isinstance(reference, RefStats):
        ref_label, ref_kind, ref_count, ref_size = str(reference.path), "npz", reference.count, reference.size
        if reference.mode is None or reference.extractor is None:
            warnings.append(f"{reference.path} does not say its mode and feature extractor; assuming they match")
        if reference.mode is not None and reference.mode != mode:
            raise MaskgitError(
                f"REF {reference.path} holds --mode {reference.mode} statistics but --mode {mode} was asked; "
                f"the modes are not comparable (remake it with maskgit fid-stats --mode {mode})"
            )
        if reference.extractor is not None and reference.extractor != extractor.name:
            raise MaskgitError(
                f"REF {reference.path} was made with feature extractor {reference.extractor!r}, not {extractor.name!r}"
            )
        if kid and reference.features is None:
            raise MaskgitError(f"REF {reference.path} holds no features (made with --no-features): KID needs them")
    else:
        ref_label, ref_kind, ref_count, ref_size = reference.label, reference.kind, len(reference), reference.size

    if ref_size is not None and tuple(ref_size) != tuple(pred_set.size):
        (ph, pw), (rh, rw) = pred_set.size, ref_size
        raise MaskgitError(
            f"image size mismatch: PRED {pred_set.label} has {pw}x{ph} images, REF {ref_label} has {rw}x{rh}"
        )
    for label, n in ((pred_set.label, len(pred_set)), (ref_label, ref_count)):
        if n is not None and n < 2:
            raise MaskgitError(f"{label}: FID needs at least 2 images, found {n}")
    if ref_count is not None and ref_count != len(pred_set):
        warnings.append(
            f"PRED {pred_set.label} has {len(pred_set)} images but REF {ref_label} has {ref_count}: "
            "FID compares the two distributions anyway"
        )
    for w in warnings:
        log(f"warning: {w}")

    model = extractor.load(dev)
    pred_feats = extract_features(pred_set, model, mode, dev, batch_size, num_workers)
    if isinstance(reference, RefStats):
        ref_mu, ref_sigma, ref_feats = reference.mu, reference.sigma, reference.features
    else:
        ref_feats = extract_features(reference, model, mode, dev, batch_size, num_workers)
        ref_mu, ref_sigma = _mu_sigma(ref_feats)
    if ref_mu.shape[0] != pred_feats.shape[1]:
        raise MaskgitError(
            f"REF {ref_label} has {ref_mu.shape[0]}-d features, the extractor gives {pred_feats.shape[1]}-d"
        )
    mu, sigma = _mu_sigma(pred_feats)
    result: dict[str, Any] = {"fid": _frechet(mu, sigma, ref_mu, ref_sigma)}
    if kid:
        result["kid"] = _kid(pred_feats, ref_feats)
    result.update(
        mode=mode,
        comparable_to_lab=mode == "legacy_pytorch" and extractor.weights != "custom extractor",
        pred=pred_set.label,
        pred_count=len(pred_set),
        ref=ref_label,
        ref_kind=ref_kind,
        ref_count=ref_count,
        image_size=list(pred_set.size),
        feature_extractor=extractor.name,
        feature_dim=int(pred_feats.shape[1]),
        weights=extractor.weights,
        warnings=warnings,
    )
    return result
