"""FID and KID of an image set against a reference, with clean-fid underneath (REFERENCE §3).

Sources of images
    PRED is a folder of images (or, from Python, a uint8 array (N,H,W,3)). REF is a folder, a statistics
    ``.npz`` written by :func:`make_stats` (``maskgit fid-stats``), or the lab's ``test_gt.csv`` (a header row,
    then one row of H*W*3 values 0-255 in HWC order per image, REFERENCE §1.3). Folders are read like the rest
    of maskgit: sorted, not recursive, transparency composited onto white (clean-fid itself globs
    recursively and drops alpha; for the RGB images of the lab both decoders give the same pixels).

Modes
    ``clean`` (default): clean-fid's TorchScript Inception and its anti-aliased PIL bicubic resize to 299.
    ``legacy_pytorch``: pytorch-fid's Inception weights and bilinear ``F.interpolate`` resize to 299 - the
    network the lab's FIDs were computed with (REFERENCE §1.3), so the mode to compare with them.
    The two modes give different numbers; every result names its mode. The resize is always clean-fid's
    ``build_resizer(mode)``; features come from ``cleanfid.fid.get_batch_features`` batch by batch and the
    distance from ``cleanfid.fid.frechet_distance`` / ``kernel_distance``.

Inception weights
    ``--inception PATH``, else ``$MASKGIT_INCEPTION``, else the file clean-fid itself would load from its
    cache (clean: ``/tmp/inception-2015-12-05.pt``; legacy_pytorch:
    ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), else a download into that cache -
    tried only when a half-second TCP probe of the download host succeeds and ``MASKGIT_NO_DOWNLOAD`` is not 1.
    Otherwise one :class:`MaskgitError` line names the file, its sha256 and where to put it. The weights are
    resolved before torch or clean-fid is imported, so that error comes back at once.

Counts and sizes
    FID compares distributions, so PRED and REF may hold different numbers of images: that is allowed with a
    warning (in the result's ``warnings`` and on stderr). All images of a set must have one size, and PRED and
    REF the same size (for an inpainting evaluation a different size means the wrong folder); both are errors.
    ``maskgit score``, which pairs images one to one, makes a count mismatch an error.

Tests inject a small feature extractor (``feature_extractor=`` or the module-level
:data:`FEATURE_EXTRACTOR_OVERRIDE`), never the real Inception.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MaskgitError

MODES = ("clean", "legacy_pytorch")

FEATURE_EXTRACTOR_OVERRIDE: Callable | None = None
"""When set, used instead of Inception wherever no ``feature_extractor`` is passed (tests set it with
monkeypatch so that the CLI runs offline). A callable: float32 (B,3,299,299) in [0,255] -> (B,D) features;
an optional ``name`` attribute identifies it in results and statistics files."""

ENV_INCEPTION = "MASKGIT_INCEPTION"
ENV_NO_DOWNLOAD = "MASKGIT_NO_DOWNLOAD"
PROBE_TIMEOUT_S = 0.5
DOWNLOAD_TIMEOUT_S = 20.0

STATS_FORMAT = "maskgit-fid-stats-1"


@dataclass(frozen=True)
class InceptionFile:
    """One mode's Inception weights file, as clean-fid looks for it."""

    mode: str
    filename: str
    url: str
    sha256: str | None  # None = no authoritative checksum known
    size: int | None
    extractor: str  # the feature extractor's id, stored in statistics files

    def cache_path(self) -> Path:
        if self.mode == "clean":
            # cleanfid.features.feature_extractor: path = "./" on Windows else "/tmp" (hardcoded)
            folder = Path("./") if platform.system() == "Windows" else Path(CLEAN_CACHE_DIR)
            return folder / self.filename
        # cleanfid.inception_pytorch.fid_inception_v3 -> torch.hub.load_state_dict_from_url -> hub/checkpoints
        return _torch_hub_dir() / "checkpoints" / self.filename


CLEAN_CACHE_DIR = "/tmp"  # where clean-fid downloads its TorchScript Inception (tests point it elsewhere)

INCEPTION_FILES = {
    # cleanfid/downloads_helper.py: inception_url. No checksum is published by clean-fid or NVIDIA.
    "clean": InceptionFile(
        "clean",
        "inception-2015-12-05.pt",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        None,
        None,
        "clean-fid torchscript inception-2015-12-05 pool3",
    ),
    # cleanfid/inception_pytorch.py: FID_WEIGHTS_URL (from pytorch-fid). torch.hub checks that the sha256 starts
    # with the 6726825d in the file name; the full digest and size are the ones pinned by several public projects.
    "legacy_pytorch": InceptionFile(
        "legacy_pytorch",
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        95_628_359,
        "pytorch-fid pt_inception-2015-12-05 pool3",
    ),
}


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch (same rules: TORCH_HOME, XDG_CACHE_HOME, ~/.cache)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub"


def _check_mode(mode: str) -> InceptionFile:
    if mode not in INCEPTION_FILES:
        raise MaskgitError(f"--mode {mode}: expected one of {', '.join(MODES)}")
    return INCEPTION_FILES[mode]


# ----------------------------------------------------------------------------------------------------------
# Inception weights: find, download, load


def _network_ok(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the URL's host within ``timeout``? (bounded even if DNS hangs)"""
    host = urllib.parse.urlparse(url).hostname
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                ok.append(True)
        except Exception:  # offline, DNS failure, a test that forbids connections
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe(spec: InceptionFile) -> str:
    checksum = f"sha256 {spec.sha256}" if spec.sha256 else "sha256 unknown: none is published"
    return f"{spec.filename} ({checksum}; from {spec.url})"


def _download(spec: InceptionFile, dest: Path) -> None:
    import shutil
    import urllib.request

    from .progress import log
    from .weights import atomic_path

    log(f"downloading {spec.url} -> {dest}")
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
            if spec.sha256 and sha256_file(tmp) != spec.sha256:
                raise MaskgitError(f"downloaded {spec.url} but its sha256 is not {spec.sha256}")
    except OSError as e:
        raise MaskgitError(
            f"could not download {_describe(spec)} to {dest} ({type(e).__name__}: {e}); "
            f"put the file there, or pass --inception PATH or set {ENV_INCEPTION}"
        ) from None


def resolve_inception(mode: str = "clean", inception: str | Path | None = None, download: bool = True) -> Path:
    """The Inception weights file for ``mode``: explicit path, $MASKGIT_INCEPTION, clean-fid's cache, download.

    Fails with one line naming the file, its sha256 and where to put it; never waits on a network timeout.
    """
    spec = _check_mode(mode)
    for value, origin in ((inception, "--inception"), (os.environ.get(ENV_INCEPTION) or None, ENV_INCEPTION)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise MaskgitError(f"{origin} {path}: no such file (expected {_describe(spec)})")
            return path
    cached = spec.cache_path()
    if cached.is_file():
        return cached
    if os.environ.get(ENV_NO_DOWNLOAD) == "1" or not download:
        why = f"downloads are off ({ENV_NO_DOWNLOAD}=1)"
    elif not _network_ok(spec.url):
        why = "no network to download it"
    else:
        _download(spec, cached)
        return cached
    raise MaskgitError(
        f"Inception weights for --mode {mode} not found and {why}: put {_describe(spec)} at {cached}, "
        f"or pass --inception PATH or set {ENV_INCEPTION}=PATH"
    )


def inception_available(mode: str = "clean", inception: str | Path | None = None) -> Path | None:
    """The weights file if it is on disk (never downloads): lets callers decide whether FID can run."""
    try:
        return resolve_inception(mode, inception, download=False)
    except MaskgitError:
        return None


def _wrong_file(path: Path, spec: InceptionFile, e: BaseException) -> MaskgitError:
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    other = INCEPTION_FILES["legacy_pytorch" if spec.mode == "clean" else "clean"]
    return MaskgitError(
        f"{path}: not a usable {spec.filename} for --mode {spec.mode} ({type(e).__name__}: {first}); "
        f"the file is wrong or corrupt (--mode {other.mode} uses {other.filename}) - expected {_describe(spec)}"
    )


def load_inception(mode: str, path: str | Path, device) -> Callable:
    """clean-fid's feature network for ``mode`` built from ``path``: float (B,3,299,299) in [0,255] -> (B,2048)."""
    import tempfile
    import warnings

    import torch

    spec = _check_mode(mode)
    path = Path(path)
    if spec.sha256 is not None:
        size = path.stat().st_size
        digest = sha256_file(path) if size == spec.size else None
        if digest != spec.sha256:
            got = f"sha256 {digest}" if digest else f"{size:,} bytes, expected {spec.size:,}"
            raise MaskgitError(
                f"{path}: wrong or corrupt Inception weights for --mode {mode} ({got}); expected {_describe(spec)}"
            )
    if mode == "clean":
        from cleanfid.inception_torchscript import InceptionV3W

        try:
            # InceptionV3W loads <dir>/inception-2015-12-05.pt: point a temporary folder at files of another name.
            with tempfile.TemporaryDirectory() as tmp:
                folder = path.parent
                if path.name != spec.filename:
                    os.symlink(path.resolve(), Path(tmp) / spec.filename)
                    folder = Path(tmp)
                with warnings.catch_warnings():  # torch >= 2.10 deprecates torch.jit.load
                    warnings.simplefilter("ignore", FutureWarning)
                    net = InceptionV3W(str(folder), download=False, resize_inside=False)
            net = net.to(device).eval()
        except Exception as e:
            raise _wrong_file(path, spec, e) from None

        def clean_fn(x):
            return net(x)

        return clean_fn

    import cleanfid.inception_pytorch as ip

    def load_local(url, *args, **kwargs):
        return torch.load(path, map_location="cpu", weights_only=True)

    original = ip.load_state_dict_from_url
    ip.load_state_dict_from_url = load_local  # fid_inception_v3() would otherwise download FID_WEIGHTS_URL
    try:
        with warnings.catch_warnings():  # torchvision's notes on clean-fid's `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            net = ip.InceptionV3(output_blocks=[3], resize_input=False).to(device).eval()
    except Exception as e:
        raise _wrong_file(path, spec, e) from None
    finally:
        ip.load_state_dict_from_url = original

    def legacy_fn(x):  # as cleanfid.features.feature_extractor("pytorch_inception")
        return net(x / 255)[0].squeeze(-1).squeeze(-1)

    return legacy_fn


# ----------------------------------------------------------------------------------------------------------
# image sources: folder, csv, in-memory array


@dataclass
class ImageSet:
    """Images to extract features from: files of a folder or a uint8 (N,H,W,3) array (csv rows, memory)."""

    label: str
    kind: str  # folder | csv | array
    size: tuple[int, int]  # (height, width)
    files: list[Path] | None = None
    array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.array)


def scan_folder(folder: str | Path, what: str = "image folder") -> ImageSet:
    """List a folder's images and check (from the headers) that they are readable and share one size."""
    from PIL import Image, UnidentifiedImageError

    from .data import list_images

    files = list_images(folder, what)
    size = None
    first = None
    for f in files:
        try:
            with Image.open(f) as img:
                w, h = img.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise MaskgitError(f"{f}: not a readable image ({type(e).__name__}: {e})") from None
        if size is None:
            size, first = (h, w), f
        elif (h, w) != size:
            raise MaskgitError(
                f"{f} is {w}x{h} but {first.name} is {size[1]}x{size[0]}: all images of {what} {folder} "
                "must have one size"
            )
    return ImageSet(str(folder), "folder", size, files=files)


def load_csv_images(path: str | Path) -> np.ndarray:
    """The lab's ``test_gt.csv``: a header row, then one row of H*W*3 values 0-255 (HWC) per square image.

    Returns uint8 (N,H,W,3). Errors name the file and the row (data rows count from 1; line = file line).
    """
    path = Path(path)
    if not path.is_file():
        raise MaskgitError(f"{path}: no such file")
    rows: list[np.ndarray] = []
    length = side = None
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
            if not header.strip():
                raise MaskgitError(f"{path}: empty csv (expected a header row, then one row of pixel values per image)")
            for line_no, line in enumerate(f, start=2):
                line = line.strip()
                if not line:
                    continue
                row_no = len(rows) + 1
                cells = line.split(",")
                if length is None:
                    side = int(round((len(cells) / 3) ** 0.5))
                    if 3 * side * side != len(cells):
                        raise MaskgitError(
                            f"{path}: data row {row_no} (line {line_no}) has {len(cells)} values, which is not "
                            "H*W*3 of a square image (the lab's 64x64 images have 12288)"
                        )
                    length = len(cells)
                elif len(cells) != length:
                    raise MaskgitError(
                        f"{path}: data row {row_no} (line {line_no}) has {len(cells)} values, expected {length} "
                        f"({side}x{side}x3, like data row 1)"
                    )
                try:
                    values = np.array(cells, dtype=np.float64)
                except ValueError:
                    col, bad = next((i, c) for i, c in enumerate(cells) if not _is_number(c))
                    raise MaskgitError(
                        f"{path}: data row {row_no} (line {line_no}), value {col + 1} is {bad.strip()[:20]!r}, "
                        "not a number"
                    ) from None
                if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
                    col = int(np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 255))[0])
                    raise MaskgitError(
                        f"{path}: data row {row_no} (line {line_no}), value {col + 1} is {cells[col].strip()}, "
                        "outside 0-255"
                    )
                rows.append(np.rint(values).astype(np.uint8).reshape(side, side, 3))
    except UnicodeDecodeError as e:
        raise MaskgitError(f"{path}: not a text csv ({e})") from None
    if not rows:
        raise MaskgitError(f"{path}: no image rows after the header")
    return np.stack(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _array_set(images, label: str) -> ImageSet:
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise MaskgitError(f"{label}: expected uint8 images (N,H,W,3), got {arr.dtype} {arr.shape}")
    if len(arr) == 0:
        raise MaskgitError(f"{label}: no images")
    return ImageSet(label, "array", (arr.shape[1], arr.shape[2]), array=arr)


def open_images(source, what: str) -> ImageSet:
    """A folder, a lab csv or a uint8 array -> :class:`ImageSet`."""
    if isinstance(source, ImageSet):
        return source
    if isinstance(source, np.ndarray):
        return _array_set(source, what)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        arr = load_csv_images(path)
        return ImageSet(str(path), "csv", (arr.shape[1], arr.shape[2]), array=arr)
    return scan_folder(path, what)


# ----------------------------------------------------------------------------------------------------------
# features


def _dataset(images: ImageSet, fn_resize):
    import torch
    import torchvision

    from .data import load_image

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
    import torch

    for item in items:
        if isinstance(item, str):
            return item
    return torch.stack(items)


def _resizer(mode: str):
    import warnings

    from cleanfid.resize import build_resizer

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
    import torch
    from cleanfid.fid import get_batch_features

    from .data import default_workers
    from .progress import progress_bar

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
    spec = _check_mode(mode)
    return _Extractor(None, spec.extractor, str(resolve_inception(mode, inception)), mode)


def _resolve_device(device):
    import torch

    from .runtime import resolve_device

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return device
    return resolve_device(str(device))


# ----------------------------------------------------------------------------------------------------------
# statistics files


@dataclass
class RefStats:
    """Reference statistics loaded from a ``.npz``."""

    path: Path
    mu: np.ndarray
    sigma: np.ndarray
    count: int | None
    mode: str | None
    extractor: str | None
    size: tuple[int, int] | None
    features: np.ndarray | None


def _is_npz(path: Path) -> bool:
    if path.suffix.lower() == ".npz":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def load_stats(path: str | Path) -> RefStats:
    """A statistics file from :func:`make_stats` (or any npz with ``mu`` and ``sigma``, e.g. pytorch-fid's)."""
    import zipfile

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise MaskgitError(f"{path}: not a readable .npz statistics file ({type(e).__name__}: {e})") from None
    if "mu" not in data or "sigma" not in data:
        raise MaskgitError(f"{path}: not a FID statistics file (no mu/sigma arrays; make one with maskgit fid-stats)")
    mu, sigma = np.asarray(data["mu"]), np.asarray(data["sigma"])
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise MaskgitError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")

    def text(key):
        return str(data[key][()]) if key in data else None

    size = tuple(int(v) for v in data["image_size"]) if "image_size" in data else None
    feats = data.get("features")
    return RefStats(
        path,
        mu,
        sigma,
        int(data["count"]) if "count" in data else None,
        text("mode"),
        text("feature_extractor"),
        size,
        feats,
    )


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
    from . import __version__
    from .weights import atomic_path

    _check_mode(mode)
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
    import warnings

    from cleanfid.fid import frechet_distance

    try:
        # it prints a note on singular products (keep stdout for results); newer SciPy warns about its sqrtm call
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            value = float(frechet_distance(mu1, sigma1, mu2, sigma2))
    except ValueError as e:
        raise MaskgitError(f"FID could not be computed: {e}") from None
    return max(value, 0.0)  # tiny negative values are rounding noise of identical sets


def _kid(feats1: np.ndarray, feats2: np.ndarray, seed: int = 0) -> float:
    from cleanfid.fid import kernel_distance

    state = np.random.get_state()  # kernel_distance draws subsets from numpy's global RNG: make it repeatable
    np.random.seed(seed)
    try:
        return float(kernel_distance(feats1, feats2))
    finally:
        np.random.set_state(state)


def _open_ref(ref) -> ImageSet | RefStats:
    if not isinstance(ref, (np.ndarray, ImageSet)):
        path = Path(ref)
        if not path.exists():
            raise MaskgitError(f"REF {path}: no such file or folder")
        if path.is_file():
            if path.suffix.lower() == ".csv":
                return open_images(path, "REF")
            if _is_npz(path):
                return load_stats(path)
            raise MaskgitError(
                f"REF {path}: expected a folder of images, a .npz from maskgit fid-stats, or the lab's test_gt.csv"
            )
        return scan_folder(path, "REF folder")
    return open_images(ref, "REF")


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
    from .progress import log

    _check_mode(mode)
    extractor = _find_extractor(mode, feature_extractor, inception)
    dev = _resolve_device(device)
    pred_set = open_images(pred, "PRED folder")
    reference = _open_ref(ref)
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
