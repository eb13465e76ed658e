"""Reference and prediction image sets for fid, score and sweep: one opener for every kind of source.

A source is a folder of images (sorted, not recursive, read like the rest of maskgit: transparency composited
onto white), the lab's ``test_gt.csv`` (:mod:`maskgit_cli.data.lab_csv`), a statistics ``.npz`` from
``maskgit fid-stats`` (FID only: it holds no images), or, from Python, a uint8 (N,H,W,3) array.

:mod:`maskgit_cli.evaluation.fid` opens its sources before torch loads (its errors come at once), so
:mod:`maskgit_cli.data.images`, which imports torch, is imported inside the functions that read pixels.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskgit_cli.data.lab_csv import load_csv_images
from maskgit_cli.errors import MaskgitError


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

    @property
    def names(self) -> list[str]:
        """One name per image, for messages and per-image rows: the file, or the csv row."""
        if self.files is not None:
            return [str(f) for f in self.files]
        return [f"{Path(self.label).name} row {i + 1}" for i in range(len(self.array))]

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (H,W,3)."""
        from maskgit_cli.data.images import load_image  # lazy: the module docstring says why

        return load_image(self.files[i]) if self.files is not None else self.array[i]

    def load_all(self) -> np.ndarray:
        """Every image as one uint8 (N,H,W,3) array (they share one size)."""
        return self.array if self.array is not None else np.stack([self.load(i) for i in range(len(self))])


def result_files(folder: str | Path, what: str = "image folder") -> list[Path]:
    """A folder's images, sorted; the results folder of `maskgit inpaint --num-samples N` (N > 1) holds N files per
    image (NAME_0.png ... NAME_{N-1}.png): its report.json beside it names sample 0 of each, and those are the ones
    scored, so that FID and PSNR pair one result with one reference."""
    from maskgit_cli.data.images import list_images  # lazy: the module docstring says why

    files = list_images(folder, what)
    report = Path(folder).parent / "report.json"
    if not report.is_file():
        return files
    try:
        data = json.loads(report.read_text())
        if int(data["settings"].get("num_samples", 1)) <= 1:
            return files
        first = sorted(Path(folder) / row["name"] for row in data["images"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return files  # not an inpaint report
    missing = [f.name for f in first if f not in files]
    if missing:
        raise MaskgitError(f"{what} {folder}: {report} names sample 0 files that are gone (e.g. {missing[0]})")
    return first


def scan_folder(folder: str | Path, what: str = "image folder") -> ImageSet:
    """List a folder's images (:func:`result_files`) and check (from the headers) that they are readable and share
    one size."""
    from maskgit_cli.data.images import read_image, shown_size  # lazy: the module docstring says why

    files = result_files(folder, what)
    size = None
    first = None
    for f in files:
        w, h = shown_size(read_image(f, header=True), header=True)  # as loaded: EXIF orientation applied
        if size is None:
            size, first = (h, w), f
        elif (h, w) != size:
            raise MaskgitError(
                f"{f} is {w}x{h} but {first.name} is {size[1]}x{size[0]}: all images of {what} {folder} "
                "must have one size"
            )
    return ImageSet(str(folder), "folder", size, files=files)


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
    from maskgit_cli.weights import check_archive_size  # lazy: keeps torch out of this module's import

    path = Path(path)
    if path.is_file():
        check_archive_size(path, "statistics file")  # an .npz is a zip: a bomb is refused before numpy expands it
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


def open_reference(source, option: str = "REF", stats: bool = True) -> ImageSet | RefStats:
    """The one opener of fid, score and sweep: a folder, the lab's csv, a uint8 array, or (with ``stats``) a
    statistics ``.npz``. Errors name ``option`` and say which kinds are accepted."""
    if isinstance(source, (np.ndarray, ImageSet)):
        return open_images(source, option)
    path = Path(source)
    kinds = "a folder of images, the lab's test_gt.csv" + (" or a .npz from `maskgit fid-stats`" if stats else "")
    if not path.exists():
        raise MaskgitError(f"{option} {path}: no such file or folder (expected {kinds})")
    if path.is_dir() or path.suffix.lower() == ".csv":
        return open_images(path, f"{option} folder" if path.is_dir() else option)
    if not _is_npz(path):
        raise MaskgitError(f"{option} {path}: expected {kinds}")
    if not stats:
        raise MaskgitError(f"{option} {path} holds FID statistics only: this needs the images ({kinds})")
    return load_stats(path)
