"""Generated inpainting masks in the lab's format (stroke, box, half, outpaint) and mask folders.

Each mask is drawn from its own random generator, ``mask_rng(seed, i)``, so mask i of a folder depends only on
the seed and i. Format: see :mod:`maskgit_cli.data.masks` (0 = hole, 255 = known).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from maskgit_cli.choices import MASK_KINDS
from maskgit_cli.data.images import list_images, load_image
from maskgit_cli.data.masks import HOLE, KNOWN, apply_mask
from maskgit_cli.data.outputs import FolderWriter, blocker, writing
from maskgit_cli.errors import MaskgitError

# Hole-fraction range kept by construction for ``stroke`` and ``box`` masks (the lab's example mask: 23.6%).
HOLE_FRACTION_MIN = 0.15
HOLE_FRACTION_MAX = 0.40

# Fixed PNG writer options. Pillow writes no timestamp chunk: equal pixels give equal files for a given zlib.
PNG_OPTIONS: dict[str, Any] = {"format": "PNG", "optimize": False, "compress_level": 9}

# --------------------------------------------------------------------------------------------------
# mask generation
# --------------------------------------------------------------------------------------------------


def _hole_fraction(img: Image.Image) -> float:
    arr = np.asarray(img)
    return float(np.count_nonzero(arr == HOLE)) / arr.size


def _draw_stroke(img: Image.Image, points: list[tuple[float, float]], width: int) -> None:
    """Draw one brush stroke (hole = 0) through ``points`` with round joints and round caps."""
    draw = ImageDraw.Draw(img)
    if len(points) >= 2:
        draw.line(points, fill=HOLE, width=width, joint="curve")
    r = width / 2.0
    for x, y in points:  # round caps (and a dot for a one-point stroke)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=HOLE)


def _random_stroke(rng: np.random.Generator, size: int) -> tuple[list[tuple[float, float]], int]:
    """A random polyline (3-7 vertices, smooth turns) and a brush width, scaled to ``size``."""
    s = size / 64.0
    width = int(rng.integers(max(1, round(3 * s)), max(1, round(9 * s)) + 1))
    n_vertices = int(rng.integers(3, 8))
    x, y = rng.uniform(0, size - 1, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    points = [(float(x), float(y))]
    for _ in range(n_vertices - 1):
        angle += rng.uniform(-1.2, 1.2)
        length = rng.uniform(6 * s, 20 * s)
        x = float(np.clip(x + length * math.cos(angle), 0, size - 1))
        y = float(np.clip(y + length * math.sin(angle), 0, size - 1))
        points.append((x, y))
    return points, width


def _stroke_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Free-form brush strokes whose hole fraction lies in [0.15, 0.40] by construction.

    A target fraction is drawn from U(0.15, 0.30); strokes are added until the hole fraction reaches it.
    A stroke that would push the fraction above 0.40 is shortened vertex by vertex; a one-vertex stroke is a
    round dot at most ``9/64 * size`` pixels across (< 2% of the area at any size), so it always fits.
    """
    target = rng.uniform(HOLE_FRACTION_MIN, HOLE_FRACTION_MAX - 0.10)
    img = Image.new("L", (size, size), KNOWN)
    frac = 0.0
    for _ in range(10_000):  # each stroke adds holes almost surely; the bound is only a safety net
        if frac >= target:
            break
        points, width = _random_stroke(rng, size)
        while True:
            candidate = img.copy()
            _draw_stroke(candidate, points, width)
            new_frac = _hole_fraction(candidate)
            if new_frac <= HOLE_FRACTION_MAX or len(points) == 1:
                break
            points = points[:-1]
        if new_frac <= HOLE_FRACTION_MAX:
            img, frac = candidate, new_frac
    return np.asarray(img, dtype=np.uint8).copy()


def _box_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """One axis-aligned rectangle covering 15-40% of the image (aspect ratio between 1:2 and 2:1)."""
    total = size * size
    lo, hi = math.ceil(HOLE_FRACTION_MIN * total), math.floor(HOLE_FRACTION_MAX * total)
    area = rng.uniform(lo, hi)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = int(np.clip(round(math.sqrt(area * aspect)), 1, size))
    # choose h so that lo <= w*h <= hi holds exactly (w >= sqrt(lo/2) keeps this non-empty for size >= 8)
    h_lo, h_hi = math.ceil(lo / w), min(size, hi // w)
    if h_lo > h_hi:  # only for tiny sizes; fall back to the closest feasible rectangle
        w = int(np.clip(round(math.sqrt(area)), 1, size))
        h_lo = h_hi = int(np.clip(round(area / w), 1, size))
    h = int(np.clip(round(area / w), h_lo, h_hi))
    x0 = int(rng.integers(0, size - w + 1))
    y0 = int(rng.integers(0, size - h + 1))
    mask = np.full((size, size), KNOWN, dtype=np.uint8)
    mask[y0 : y0 + h, x0 : x0 + w] = HOLE
    return mask


def _half_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """One random half (left, right, top or bottom) is the hole."""
    side = ("left", "right", "top", "bottom")[int(rng.integers(0, 4))]
    mask = np.full((size, size), KNOWN, dtype=np.uint8)
    half = size // 2
    if side == "left":
        mask[:, :half] = HOLE
    elif side == "right":
        mask[:, half:] = HOLE
    elif side == "top":
        mask[:half, :] = HOLE
    else:
        mask[half:, :] = HOLE
    return mask


def _outpaint_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A known centred square (side 50-75% of the image); everything around it is the hole."""
    side = int(rng.integers(size // 2, (3 * size) // 4 + 1))
    start = (size - side) // 2
    mask = np.full((size, size), HOLE, dtype=np.uint8)
    mask[start : start + side, start : start + side] = KNOWN
    return mask


_GENERATORS = {"stroke": _stroke_mask, "box": _box_mask, "half": _half_mask, "outpaint": _outpaint_mask}


def _check_kind(kind: str) -> None:
    if kind not in MASK_KINDS:
        raise MaskgitError(f"Unknown mask kind {kind!r} (option --kind); use one of {', '.join(MASK_KINDS)}.")


def generate_mask(kind: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Generate one random mask in the lab format: ``uint8 (size, size)``, 0 = hole, 255 = known.

    ``kind`` is one of :data:`MASK_KINDS`:

    - ``stroke``: free-form brush strokes like the lab's (random polylines, random width, round joints);
      hole fraction in [0.15, 0.40].
    - ``box``: one random rectangle, hole fraction in [0.15, 0.40].
    - ``half``: the left, right, top or bottom half is the hole.
    - ``outpaint``: a known centred square (side 50-75%), holes around it.

    The result depends only on ``kind``, ``size`` and the state of ``rng`` (a ``numpy.random.Generator``).
    """
    _check_kind(kind)
    if int(size) < 8:
        raise MaskgitError(f"Mask size must be at least 8 pixels, got {size}.")
    return _GENERATORS[kind](rng, int(size))


def generate_mask_for(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A mask of ``kind`` for an image of any (height, width): drawn square at the longer side, then resized
    (nearest) to the image; the same as :func:`generate_mask` for a square image."""
    mask = generate_mask(kind, rng, size=max(height, width))
    if mask.shape != (height, width):
        mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return mask


def mask_rng(seed: int, index: int) -> np.random.Generator:
    """The generator used for mask ``index`` of a run with ``seed``: depends on (seed, index) only."""
    return np.random.default_rng([int(seed), int(index)])


# --------------------------------------------------------------------------------------------------
# writing mask folders
# --------------------------------------------------------------------------------------------------


def mask_name(index: int, count: int) -> str:
    """Lab mask file name: ``mask_000.png``; at least 3 digits, more when ``count`` needs them."""
    digits = max(3, len(str(max(count - 1, 0))))
    return f"mask_{index:0{digits}d}.png"


def write_masks(
    images_dir: str | Path,
    out_dir: str | Path,
    kind: str,
    seed: int,
    masked_out: str | Path | None = None,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Write one ``kind`` mask per image of ``images_dir`` into ``out_dir``; optionally the masked images.

    Images are taken in sorted file-name order; mask ``i`` is ``mask_{i:03d}.png`` (more digits past 1000
    images) and pairs with the ``i``-th image, as in the lab. Each mask has the size of its (square) image and
    is drawn with :func:`mask_rng` ``(seed, i)``: deterministic and independent of the other images.
    With ``masked_out``, the masked images (holes gray 128, RGB PNG) are written there under the input image's
    file stem with a ``.png`` suffix (the same name for PNG inputs).

    Every file is first written into a staging folder (beside a new output folder, inside an existing one)
    and moved into place once all of them are complete (:class:`~maskgit_cli.data.outputs.FolderWriter`, merging):
    an error (a bad image, a full disk, no permission) leaves the output folders as they were, without a mix of
    old and new masks; an existing folder keeps its other files. ``overwrite`` False (`maskgit masks` without
    --overwrite) refuses to replace any existing file of the same name.

    Returns a summary dict: ``count``, ``kind``, ``seed``, ``images_dir``, ``out_dir``, ``masked_out``,
    ``first``/``last`` mask names, ``hole_fraction`` (``mean``, ``min``, ``max``).
    """
    _check_kind(kind)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MaskgitError(f"Mask seed (option --seed) must be a non-negative integer, got {seed!r}.")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    images = list_images(images_dir)
    masked_dir = Path(masked_out) if masked_out is not None else None
    if masked_dir is not None:
        stems: dict[str, str] = {}
        for p in images:
            if p.stem in stems:
                raise MaskgitError(
                    f"Images {stems[p.stem]} and {p.name} in {images_dir} would both be written as "
                    f"{p.stem}.png in the masked image folder {masked_dir}; rename one of them."
                )
            stems[p.stem] = p.name
    targets = [(out_dir, "mask output folder")]
    if masked_dir is not None:
        targets.append((masked_dir, "masked image folder (--masked-out)"))
    for target, option in targets:
        if target.exists() and target.resolve() == images_dir.resolve():
            raise MaskgitError(f"The {option} {target} must differ from the image folder {images_dir}.")
        stop = blocker(target)
        if stop == target:
            raise MaskgitError(f"The {option} {target} exists and is not a folder.")
        if stop is not None:
            raise MaskgitError(f"The {option} {target} cannot be made: {stop} is a file, not a folder.")

    if masked_dir is not None and masked_dir.resolve() == out_dir.resolve():
        raise MaskgitError(f"The masked image folder (--masked-out) {masked_dir} must differ from the mask folder.")
    n = len(images)
    names = [mask_name(i, n) for i in range(n)]
    if not overwrite:
        written = {out_dir: names, masked_dir: [p.stem + ".png" for p in images]}
        for target, files in written.items():
            if target is None:
                continue
            there = [name for name in files if (target / name).exists()]
            if there:
                raise MaskgitError(
                    f"{target} already holds {len(there)} of the files to write (e.g. {there[0]}); pass --overwrite "
                    "to replace them, or choose another folder"
                )
    if out_dir.is_dir():
        stale = sorted(p.name for p in out_dir.glob("mask_*.png") if p.name not in set(names))
        if stale:
            raise MaskgitError(
                f"Mask folder {out_dir} already holds {len(stale)} other mask files (e.g. {stale[0]}) that "
                "would break the name-order pairing; remove them or choose another folder."
            )

    writers = [FolderWriter(target, merge=True, what="the masks") for target, _ in targets]
    fractions = []
    with writing(*writers):
        for i, (path, name) in enumerate(zip(images, names, strict=True)):
            image = load_image(path)
            h, w = image.shape[:2]
            if w != h:
                raise MaskgitError(f"{path}: image is {w}x{h}; masks need square images")
            mask = generate_mask(kind, mask_rng(seed, i), size=w)
            fractions.append(float(np.count_nonzero(mask == HOLE)) / mask.size)
            writers[0].save(name, mask, **PNG_OPTIONS)
            if masked_dir is not None:
                writers[1].save(path.stem + ".png", apply_mask(image, mask), **PNG_OPTIONS)

    frac = np.asarray(fractions)
    return {
        "count": n,
        "kind": kind,
        "seed": int(seed),
        "images_dir": str(images_dir),
        "out_dir": str(out_dir),
        "masked_out": str(masked_dir) if masked_dir is not None else None,
        "first": names[0],
        "last": names[-1],
        "hole_fraction": {"mean": float(frac.mean()), "min": float(frac.min()), "max": float(frac.max())},
    }
