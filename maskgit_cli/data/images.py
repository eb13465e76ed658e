"""Image folders: listing, decoding to RGB, and a torch Dataset that reports bad files instead of crashing.

Pairing between folders (masked images and masks, predictions and references) is by sorted file name, like the
lab (:func:`check_pairs`; docs/data.md, "The lab's files").
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from maskgit_cli.errors import MaskgitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
ORIENTATION = 0x0112  # the EXIF tag that says how a photo stored rotated is shown (1 = as stored)


def list_images(folder: str | Path, what: str = "image folder") -> list[Path]:
    """Sorted image files of ``folder`` (not recursive). Missing or empty folders are one-line errors."""
    folder = Path(folder)
    if not folder.exists():
        raise MaskgitError(f"{what} {folder}: no such folder")
    if not folder.is_dir():
        raise MaskgitError(f"{what} {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise MaskgitError(f"{what} {folder}: contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def check_pairs(first, second, first_desc: str, second_desc: str) -> None:
    """Two sorted lists that must pair up one to one, like the lab's folders (docs/data.md, "The lab's files"):
    masked images and masks, predictions and references. Different lengths are one error naming the first item
    without a partner, e.g. ``check_pairs(images, masks, f"images in {a}", f"masks in {b}")``."""
    if len(first) != len(second):
        n = min(len(first), len(second))
        extra = first[n] if len(first) > n else second[n]
        raise MaskgitError(
            f"{len(first)} {first_desc} but {len(second)} {second_desc}: they pair up one to one in sorted "
            f"file-name order (first unpaired: {getattr(extra, 'name', extra)})"
        )


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit grayscale image (PIL modes ``I;16*``, ``I``, ``F``) -> 8-bit ``L``; other modes as is.

    Pillow's own conversion clips these to 255 (a 16-bit PNG reads as all white). ``I;16``: value/257 rounded;
    ``I``: clipped to 0..65535, then value/257 if any value exceeds 255 (else already 8-bit values); ``F``:
    [0,1] if its maximum is <= 1, else [0,255]. A transparent gray value (PNG tRNS) becomes white.
    """
    if not (img.mode.startswith("I;16") or img.mode in ("I", "F")):
        return img
    raw = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(raw.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        out = np.clip(np.round(values * scale), 0, 255)
    else:
        values = np.clip(raw.astype(np.int64), 0, 65535)
        wide = img.mode.startswith("I;16") or (values.size and values.max() > 255)
        out = np.round(values / 257.0) if wide else values
    out = out.astype(np.uint8)
    transparent = img.info.get("transparency")
    if isinstance(transparent, (int, float)) and not isinstance(transparent, bool):
        out[raw == transparent] = 255
    return Image.fromarray(out)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited onto white (as the emoji64 builder does); 16-bit and
    32-bit grayscale are scaled to 8 bits (:func:`to_8bit`)."""
    if img.mode == "RGB":
        return img
    img = to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _claimed_size(path) -> str:
    """``WxH`` from an image's header alone, Pillow's pixel limit lifted for this one look; ``?`` if unreadable."""
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:  # reads the header only
                return f"{img.size[0]}x{img.size[1]}"
    except Exception:  # noqa: BLE001 - the size is only a detail of the message
        return "?"
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def bomb_error(path, what: str = "") -> MaskgitError:
    """The one-line error for a decompression bomb: the file and the size its header claims."""
    name = f"{what} {path}" if what else str(path)
    limit = f"{Image.MAX_IMAGE_PIXELS:,}" if Image.MAX_IMAGE_PIXELS else "?"
    return MaskgitError(
        f"{name}: its header claims {_claimed_size(path)} pixels, more than the {limit}-pixel limit; "
        "refusing to decode it (a decompression bomb or a damaged file)"
    )


def orientation(img: Image.Image, header: bool = False) -> int:
    """The EXIF orientation of ``img`` (2-8: a photo stored rotated or mirrored, as phones write them), 1 when it has
    none or an unreadable one (untrusted metadata is ignored, as viewers do). ``header``: decode nothing to find it
    (a PNG's eXIf chunk after its pixels, which Pillow reads by decoding them, is not looked at)."""
    if header and img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of corrupt EXIF data
            value = img.getexif().get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - damaged metadata: shown as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(img: Image.Image) -> Image.Image:
    """``img`` as image viewers show it: its EXIF orientation applied (a transposed copy), or ``img`` itself when it
    has none. Every image and mask is read this way (:func:`read_image`, and PIL images given to the Python API), so
    a mask drawn over a photo as it is shown lands where it was drawn."""
    return img if orientation(img) == 1 else ImageOps.exif_transpose(img)


def shown_size(img: Image.Image, header: bool = False) -> tuple[int, int]:
    """(width, height) of ``img`` as viewers show it (EXIF orientations 5-8 swap the sides); ``header``: see
    :func:`orientation`."""
    w, h = img.size
    return (h, w) if orientation(img, header) >= 5 else (w, h)


def read_image(path: str | Path, what: str = "", header: bool = False) -> Image.Image:
    """``Image.open`` + ``load`` with one-line errors naming the file (``what`` prefixes it, e.g. "Mask file"):
    unreadable files and decompression bombs, whose header claims more than ``Image.MAX_IMAGE_PIXELS`` (Pillow
    warns above it and raises ``DecompressionBombError``, not an ``OSError``, above twice it; both are refused).
    The image comes as viewers show it (:func:`upright`: EXIF orientation applied). ``header``: read the header only
    (size and mode, no pixels, the size as stored: :func:`shown_size` turns it as shown)."""
    name = f"{what} {path}" if what else str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if not header:
                    img.load()
                    return upright(img)
                return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise bomb_error(path, what) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise MaskgitError(f"{name}: not a readable image ({type(e).__name__}: {e})") from None


def load_image(path: str | Path, size: int | None = None, resize: bool = False) -> np.ndarray:
    """Decode ``path`` to a uint8 (H,W,3) RGB array.

    With ``size`` the image must be size x size, unless ``resize`` (bicubic) is set; errors name the file.
    """
    path = Path(path)
    img = to_rgb(read_image(path))
    if size is not None and img.size != (size, size):
        if not resize:
            raise MaskgitError(
                f"{path}: image is {img.size[0]}x{img.size[1]}, expected {size}x{size} (pass --resize to resize it)"
            )
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8).copy()


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape) -> float32 in [0,1], the same shape: the one uint8 -> [0,1] conversion."""
    return pixels.float().div_(255.0)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (H,W,3) or (B,H,W,3) -> float (3,H,W) / (B,3,H,W) in [0,1]."""
    t = to_unit(torch.from_numpy(np.ascontiguousarray(images)))
    return t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def to_uint8(images: torch.Tensor, rounding: str = "even") -> np.ndarray:
    """float (B,3,H,W) in [0,1] -> uint8 (B,H,W,3): round(255 x) half to even, or with ``rounding="half-up"``
    floor(255 x + 0.5) as torchvision's ``save_image`` (the lab's pictures) writes them."""
    x = images.detach().float().clamp(0, 1).mul(255)
    x = x.add_(0.5).floor_() if rounding == "half-up" else x.round()
    return x.byte().permute(0, 2, 3, 1).cpu().numpy()


def save_image(array: np.ndarray, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


class ImageFolder(torch.utils.data.Dataset):
    """Images of one folder as float tensors (3,H,W) in [0,1].

    Items are ``(image, index)``. With ``skip_invalid`` a bad file yields ``(None, index)`` and is dropped by
    :func:`collate_skip_invalid`; otherwise the MaskgitError naming the file propagates.
    """

    def __init__(self, folder, size: int, resize: bool = False, skip_invalid: bool = False, files=None):
        self.files = list(files) if files is not None else list_images(folder)
        self.size, self.resize, self.skip_invalid = size, resize, skip_invalid

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return to_tensor(load_image(self.files[i], self.size, self.resize)), i
        except MaskgitError:
            if self.skip_invalid:
                return None, i
            raise


@dataclass
class Batch:
    images: torch.Tensor  # (B,3,H,W) float in [0,1]
    indices: list[int]  # dataset indices of the images
    skipped: list[int]  # dataset indices of files that could not be used


def collate_skip_invalid(items) -> Batch:
    good = [(img, i) for img, i in items if img is not None]
    skipped = [i for img, i in items if img is None]
    images = torch.stack([img for img, _ in good]) if good else torch.empty(0)
    return Batch(images, [i for _, i in good], skipped)


def image_loader(
    dataset: ImageFolder,
    batch_size: int,
    num_workers: int | None = None,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    sampler=None,
):
    """A DataLoader that decodes images in worker processes and yields :class:`Batch` objects."""
    if num_workers is None:
        num_workers = default_workers()
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skip_invalid,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def default_workers() -> int:
    """Decode workers: leave a core to the main process; none on tiny machines."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if n <= 2 else min(8, n - 1)


def load_folder(folder, size: int, resize: bool = False) -> tuple[torch.Tensor, list[Path]]:
    """All images of a folder as one (N,3,H,W) float tensor in [0,1] (for small sets: tests, validation)."""
    files = list_images(folder)
    return to_tensor(np.stack([load_image(f, size, resize) for f in files])), files
