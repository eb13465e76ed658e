"""What the page's controls hold, read into what the library takes: pixels, a lab mask and the decoding settings.

Images come from an uploaded file or the image editor (transparency flattened on white, as everywhere in the
package) and are refused over the page's pixel limit; the mask is the brush's drawing or a generated mask kind. The
decoding controls are read as numbers and passed straight to the library's settings, which check them
(:meth:`PageSettings.resolve`): the page holds no second copy of their defaults or rules.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskgit_cli.choices import MASK_KINDS, check_choice
from maskgit_cli.data.images import read_image, to_rgb
from maskgit_cli.data.inputs import HOLE, KNOWN, holes_gray, known_pixels
from maskgit_cli.data.mask_generator import generate_mask_for, mask_rng
from maskgit_cli.decoding.inpaint import InpaintSettings
from maskgit_cli.errors import MaskgitError

# The largest image the page takes (width x height): 4096 x 4096. Larger ones are refused before decoding.
MAX_PIXELS = 4096 * 4096
# Where the mask comes from: drawn with the brush, or generated (maskgit_cli.data.mask_generator).
MASK_SOURCES = ("brush", *MASK_KINDS)
# The emoji64 test images of a checkout (absent from an installed package: the picker is then hidden).
EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "emoji64" / "test"
MAX_SAMPLES = 8
# The longest side of the copy of an opened image that the editor shows (and the previews): a large image is scaled
# down (its pixels stay on the server, :class:`Opened`), a small one up (sharp, nearest), so the brush has one size.
# The editor reads its canvas back (WebGL readPixels) whenever Gradio asks it for its value: for a 2560x3000 photo,
# 17 s of the browser's time at 1024 px, 5.6 s at 512 px (Chromium, software GL, AMD EPYC shared by other work).
SHOWN_SIDE = 512


# ---------------------------------------------------------------------------------------------------------
# Images and masks


def read_upload(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An uploaded image file as uint8 (H,W,3) (transparency flattened on white, as everywhere in the package):
    one-line MaskgitErrors for an unreadable file and for one over ``max_pixels`` (refused from its header)."""
    width, height = _read_named(path, header=True).size
    check_pixels(width, height, max_pixels)
    return np.array(to_rgb(_read_named(path)), dtype=np.uint8)


@dataclass
class Opened:
    """An image opened on the page, kept on the server for the session: its file name, its pixels, and the copy the
    editor shows (the same pixels when no side is over :data:`SHOWN_SIDE`), so Inpaint sends only the drawing."""

    name: str
    pixels: np.ndarray
    shown: np.ndarray

    @classmethod
    def of(cls, name: str, pixels: np.ndarray) -> Opened:
        return cls(name, pixels, shown_copy(pixels))

    @property
    def stem(self) -> str:
        """The name without its suffix, as the downloads are named (``NAME-inpainted.png``)."""
        return Path(self.name).stem or "image"


def shown_copy(pixels: np.ndarray, side: int = SHOWN_SIDE) -> np.ndarray:
    """``pixels`` scaled so that the longer side is ``side``: down with Lanczos, up with nearest (whole pixels)."""
    h, w = pixels.shape[:2]
    if max(h, w) == side:
        return pixels
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.LANCZOS if scale < 1 else Image.NEAREST))


def check_editor_files(files, max_pixels: int = MAX_PIXELS) -> None:
    """The image editor's files as the page received them (paths or bytes: background, layers, composite; None
    skipped), each refused over ``max_pixels`` from its header alone, before anything decodes it (Gradio decodes the
    editor's value before a handler sees it): the one-line errors of :func:`read_upload`."""
    for f in files:
        if f is None:
            continue
        if isinstance(f, (bytes, bytearray, memoryview)):
            try:
                width, height = read_image(io.BytesIO(f), header=True).size
            except MaskgitError as e:
                raise MaskgitError(f"the editor's image: {str(e).split(': ', 1)[-1]}") from None
        else:
            width, height = _read_named(f, header=True).size
        check_pixels(width, height, max_pixels)


def _read_named(path, header: bool = False):
    """:func:`read_image`, its errors naming the file alone (the page does not show the server's folders)."""
    try:
        return read_image(path, header=header)
    except MaskgitError as e:
        raise MaskgitError(str(e).replace(str(path), Path(path).name)) from None


def check_pixels(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise MaskgitError(
            f"the image is {width}x{height} = {width * height:,} pixels, more than the page's limit of "
            f"{max_pixels:,}: use a smaller image (or `maskgit inpaint` for large ones)"
        )


def editor_image(value, max_pixels: int = MAX_PIXELS, opened: Opened | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The image editor's value -> (pixels uint8 (H,W,3), drawn bool (H,W): True where the brush painted).

    ``value``: Gradio's ImageEditor dict (``background``, ``layers``, ``composite``) of uint8 arrays (RGBA, or
    RGB/L). The background's transparency is flattened on white; a pixel is drawn where any layer is not
    transparent. ``opened``: the image the page opened, when the editor shows it (its shown copy's size): its
    pixels are the server's, and the drawing is scaled to them."""
    background = value.get("background") if isinstance(value, dict) else None
    if background is None:
        raise MaskgitError("no image: open an image file, drop one on the editor, or pick an emoji64 test image")
    background = np.asarray(background)
    h, w = background.shape[:2]
    check_pixels(w, h, max_pixels)
    drawn = np.zeros((h, w), dtype=bool)
    for layer in value.get("layers") or []:
        if layer is not None:
            drawn |= _painted(np.asarray(layer), h, w)
    if opened is not None and opened.shown.shape[:2] == (h, w):
        return opened.pixels, _scaled_to(drawn, opened.pixels.shape[:2])
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[background.shape[2] if background.ndim == 3 else 2]
    return np.array(to_rgb(Image.fromarray(background.astype(np.uint8), mode)), dtype=np.uint8), drawn


def _scaled_to(drawn: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The drawing on the shown copy at the opened image's size: up with nearest, down with any painted pixel
    counting (so no stroke is lost); the same array when the sizes agree."""
    if drawn.shape == shape:
        return drawn
    smaller = shape[0] < drawn.shape[0]
    scaled = Image.fromarray(drawn.astype(np.uint8) * 255).resize(
        (shape[1], shape[0]), Image.BOX if smaller else Image.NEAREST
    )
    return np.asarray(scaled) > 0


def _painted(layer: np.ndarray, h: int, w: int) -> np.ndarray:
    """Where one drawing layer of the editor was painted: not transparent, or not black for a layer without alpha."""
    if layer.shape[:2] != (h, w):
        raise MaskgitError(
            f"the drawing is {layer.shape[1]}x{layer.shape[0]} but the image is {w}x{h}: draw on the image again"
        )
    if layer.ndim == 3 and layer.shape[2] == 4:
        return layer[..., 3] > 0
    return (layer.reshape(h, w, -1) > 0).any(axis=2)


def generated_mask(kind: str, seed: int, height: int, width: int) -> np.ndarray:
    """Mask ``kind`` of ``mask_rng(seed, 0)`` for an image of (height, width), as `maskgit inpaint --mask-kind KIND
    --mask-seed SEED` makes it for the first image of a folder. Lab format: 0 = hole, 255 = known."""
    return generate_mask_for(kind, mask_rng(seed, 0), height, width)


def page_mask(source: str, drawn: np.ndarray, mask_seed: int = 0) -> np.ndarray:
    """The lab mask (0 = hole, 255 = known) for the image: the brush's drawing, or a generated mask kind."""
    check_choice(source, MASK_SOURCES, "mask")
    h, w = drawn.shape
    if source == "brush":
        if not drawn.any():
            raise MaskgitError(
                "the mask is empty: paint over what to inpaint with the brush, or pick a generated mask "
                f"({', '.join(MASK_KINDS)})"
            )
        return np.where(drawn, HOLE, KNOWN).astype(np.uint8)
    return generated_mask(source, mask_seed, h, w)


def masked_preview(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input as the model sees it: the holes of its lab ``mask`` gray."""
    return holes_gray(pixels, ~known_pixels(mask))


def example_names() -> list[str]:
    """The emoji64 test images of this checkout (sorted), or [] for an installed package."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES.iterdir() if p.suffix.lower() == ".png")


# ---------------------------------------------------------------------------------------------------------
# Settings


@dataclass
class PageSettings:
    """One request's settings as the page's controls set them.

    ``decoding``: the decoding options given on the page, flat as :meth:`InpaintSettings.from_options` takes them;
    an option left out is the pipeline's (`maskgit serve`'s options, ``--lab`` included). The library checks them
    (:meth:`resolve`). ``num_samples`` and ``fit``: the Inpainter call's own arguments."""

    decoding: dict
    num_samples: int
    fit: str

    @classmethod
    def from_page(
        cls,
        schedule,
        total_iter,
        sweet_spot,
        sampler,
        pixel_guidance,
        seed,
        num_samples,
        fit,
        temperature=None,
        blend=None,
    ) -> PageSettings:
        """From the controls' raw values (numbers may come as floats, strings or None): one-line errors naming a
        control whose value is not a number. An empty box: sweet spot 0 (all T steps), guidance 0 (off), seed 0,
        one sample; temperature and blend the pipeline's."""
        decoding = {
            "schedule": str(schedule),
            "total_iter": _integer(total_iter, "T (total iterations)"),
            "sweet_spot": _integer(sweet_spot, "sweet spot", 0) or None,  # 0: all T steps
            "sampler": str(sampler),
            "pixel_guidance": _number(pixel_guidance, "guidance", 0.0),
            "seed": _integer(seed, "seed", 0),
            "temperature": None if temperature in (None, "") else _number(temperature, "temperature"),
            "blend": None if blend in (None, "") else str(blend),
        }
        samples = _integer(num_samples, "samples", 1)
        if not 1 <= samples <= MAX_SAMPLES:
            raise MaskgitError(f"samples {samples}: between 1 and {MAX_SAMPLES}")
        return cls({k: v for k, v in decoding.items() if v is not None}, samples, str(fit))

    def resolve(self, defaults: dict) -> InpaintSettings:
        """The library's settings of this request: ``defaults`` (the pipeline's, flat) with the page's options over
        them. :class:`InpaintSettings` checks every value (one-line errors naming the option)."""
        return InpaintSettings.from_options(**{**defaults, **self.decoding})

    def call(self) -> dict:
        """The keyword arguments of the Inpainter call: samples, fit and the decoding options."""
        return {"num_samples": self.num_samples, "fit": self.fit, **self.decoding}


def mask_seed_from(value) -> int:
    """The mask seed control's value (empty: 0)."""
    return _integer(value, "mask seed", 0)


def _number(value, name: str, default: float | None = None) -> float:
    if value is None or value == "":
        if default is None:
            raise MaskgitError(f"{name}: a number is needed")
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MaskgitError(f"{name} {value!r}: not a number") from None
    if not np.isfinite(number):
        raise MaskgitError(f"{name} {value!r}: not a finite number")
    return number


def _integer(value, name: str, default: int | None = None) -> int:
    number = _number(value, name, None if default is None else float(default))
    if number != int(number):
        raise MaskgitError(f"{name} {value!r}: a whole number is needed")
    return int(number)
