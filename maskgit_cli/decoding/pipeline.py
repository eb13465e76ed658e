"""Inpainting from Python in three lines: :class:`Inpainter`.

    from maskgit_cli import Inpainter
    pipe = Inpainter.from_pretrained()                 # the shipped emoji64 weights (or a transformer file + vqgan=)
    result = pipe(image, mask)                         # PIL image(s) in, PIL image(s) out

Images are PIL images, uint8 numpy arrays (H,W,3) or float tensors (3,H,W) in [0,1], or lists of them; masks
follow the lab's convention (0 = hole, 255 = known; or bool arrays/tensors with True = known). The models are
loaded once by :meth:`Inpainter.from_pretrained` and the code patches for guidance computed once per pipeline; each
call decodes with :func:`maskgit_cli.decoding.inpaint.inpaint_batch`, the same path as `maskgit inpaint`, so the same
image, mask, settings and seed give the same pixels as the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from maskgit_cli.choices import check_choice
from maskgit_cli.data.images import to_rgb, to_tensor, to_uint8
from maskgit_cli.data.masks import known_pixels
from maskgit_cli.decoding.inpaint import InpaintSettings, inpaint_batch, mask_tile, prepare_models, with_defaults
from maskgit_cli.errors import MaskgitError


@dataclass
class InpaintOutput:
    """What :meth:`Inpainter.__call__` returns with ``return_steps=True``: the results and, per input, the decoded
    image and the token mask (white = known, black = still masked) after every step."""

    images: list  # PIL images (num_samples per input, input-major)
    step_images: list = field(default_factory=list)  # per result: list of PIL images, one per step
    step_masks: list = field(default_factory=list)  # per result: list of PIL images (h x w, scaled), one per step + 1


class Inpainter:
    """A loaded transformer + VQGAN that inpaints images held in memory (see the module docstring)."""

    def __init__(self, transformer, vqgan, device="cpu", any_vqgan: bool = False, **settings):
        self.device = torch.device(device)
        self.defaults = settings
        probe = InpaintSettings.from_options(**settings)
        self.ready = prepare_models(transformer, vqgan, self.device, probe, any_vqgan=any_vqgan)
        self.size = self.ready.vqgan.config.img_resolution

    @classmethod
    def from_pretrained(cls, transformer=None, vqgan=None, device: str = "auto", **settings) -> Inpainter:
        """Load a transformer file (default: the shipped emoji64 weights) and its VQGAN (default: the shipped one)
        once. ``settings``: defaults for every call (schedule, total_iter, sweet_spot, sampling, seed, lab, ...)."""
        from maskgit_cli.runtime import resolve_device

        transformer, vqgan = with_defaults(transformer, vqgan)
        return cls(transformer, vqgan, resolve_device(device), **settings)

    @torch.no_grad()
    def __call__(self, image, mask, num_samples: int = 1, return_steps: bool = False, fit: str = "auto", **settings):
        """Inpaint ``image`` where ``mask`` says hole; a list of images (and masks) gives a list of results.

        ``num_samples`` > 1 gives that many results per input, from different random streams (seed, seed+1, ...).
        ``settings`` override the pipeline's defaults for this call (e.g. ``schedule="square"``, ``seed=3``).
        ``fit``: how an image of another size than the model's is inpainted (docs/machines.md, "Any image size"):
        ``crop`` (a window around each group of holes, with context, resized to the model's size and back; the
        default for images larger than the model), ``resize`` (the whole image; the default for smaller ones) or
        ``none`` (model-size images only). Known pixels are always returned unchanged.
        """
        check_choice(fit, FITS, "fit")
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        masks = [mask] if single else list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(images)
        if len(masks) != len(images):
            raise MaskgitError(f"{len(images)} images but {len(masks)} masks: give one mask per image")
        if num_samples < 1:
            raise MaskgitError(f"num_samples {num_samples}: must be at least 1")
        sized = [self._size_of(x) for x in images]
        if any(s != (self.size, self.size) for s in sized):
            if fit == "none":
                h, w = next(s for s in sized if s != (self.size, self.size))
                raise MaskgitError(
                    f"an image is {w}x{h}, but the model inpaints {self.size}x{self.size} images (fit='crop' or "
                    "'resize' take any size)"
                )
            if return_steps:
                raise MaskgitError("return_steps needs images of the model's size (the steps are at that size)")
            results = self._fitted(images, masks, num_samples, fit, settings)
            return results[0] if single and num_samples == 1 else results
        pixels = torch.stack([self._image(x, i) for i, x in enumerate(images)]).to(self.device)
        holes = torch.stack([self._holes(m, i) for i, m in enumerate(masks)]).to(self.device)
        results, steps, step_masks = [], [], []
        rows = range(len(images)) if return_steps else ()
        per_sample = [self._decode(pixels, holes, k, settings, rows) for k in range(num_samples)]
        for i in range(len(images)):
            for batch in per_sample:
                results.append(_pil(to_uint8(batch.images[i : i + 1])[0]))
                if return_steps:
                    steps.append([_pil(a) for a in to_uint8(torch.stack(batch.step_images[i]))])
                    step_masks.append([_pil(mask_tile(m, self.size)) for m in batch.step_masks[i]])
        if return_steps:
            return InpaintOutput(results, steps, step_masks)
        return results[0] if single and num_samples == 1 else results

    def _size_of(self, x) -> tuple[int, int]:
        """(height, width) of an input image, whatever its kind."""
        from PIL import Image

        if isinstance(x, Image.Image):
            return x.size[1], x.size[0]
        if isinstance(x, torch.Tensor):
            return tuple(x.shape[-2:])
        return tuple(np.asarray(x).shape[:2])

    def _fitted(self, images: list, masks: list, num_samples: int, fit: str, settings: dict) -> list:
        """Inputs of any size: each image's windows (:func:`fit_windows`) are inpainted at the model's size in one
        batch, resized back and pasted into the holes of their own group only."""
        results = []
        for i, (x, m) in enumerate(zip(images, masks)):
            pixels = to_uint8(self._image(x, i, any_size=True)[None])[0]  # (H,W,3)
            holes = self._holes(m, i, pixels.shape[:2]).numpy()
            mode = fit if fit != "auto" else ("crop" if min(holes.shape) > self.size else "resize")
            windows = fit_windows(holes, self.size, mode)
            for k in range(num_samples):
                results.append(_pil(self._fill_windows(pixels, holes, windows, k, settings)))
        return results

    def _fill_windows(self, pixels: np.ndarray, holes: np.ndarray, windows, sample: int, settings: dict) -> np.ndarray:
        """``pixels`` (H,W,3) uint8 with every window inpainted at the model's size and pasted into its holes."""
        from PIL import Image

        if not windows:
            return pixels.copy()
        size = self.size
        crops, crop_holes = [], []
        for y0, x0, h, w, _ in windows:
            crop = Image.fromarray(pixels[y0 : y0 + h, x0 : x0 + w]).resize((size, size), Image.BICUBIC)
            hole = Image.fromarray(holes[y0 : y0 + h, x0 : x0 + w].astype(np.uint8) * 255).resize(
                (size, size), Image.BOX
            )
            crops.append(to_tensor(np.array(crop)))
            crop_holes.append(torch.from_numpy(np.asarray(hole) > 0))  # a hole wherever any of its pixels is one
        batch = self._decode(torch.stack(crops), torch.stack(crop_holes), sample, settings, ())
        out = pixels.copy()
        for (y0, x0, h, w, own), result in zip(windows, to_uint8(batch.images)):
            back = np.asarray(Image.fromarray(result).resize((w, h), Image.BICUBIC))
            region = out[y0 : y0 + h, x0 : x0 + w]
            region[own] = back[own]  # only this window's own holes: every known pixel stays as it was
        return out

    def _decode(self, pixels: torch.Tensor, holes: torch.Tensor, sample: int, settings: dict, rows):
        """One batch of model-size images through inpaint_batch with the pipeline's settings (seed + sample)."""
        options = {**self.defaults, **settings}
        s = InpaintSettings.from_options(seed=int(options.pop("seed", 0)) + sample, **options)
        ids = torch.arange(len(pixels), device=self.device)
        patches = self.ready.guide.patches if self.ready.guide is not None else None
        r = self.ready
        return inpaint_batch(
            r.transformer, r.vqgan, pixels.to(self.device), holes.to(self.device), s, ids, rows, patches
        )

    def _image(self, x, i: int, any_size: bool = False) -> torch.Tensor:
        """One input image as a float (3,H,W) tensor in [0,1] of the model's size (or ``any_size``)."""
        from PIL import Image

        if isinstance(x, Image.Image):
            x = np.array(to_rgb(x))
        if isinstance(x, np.ndarray):
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
                raise MaskgitError(f"image {i}: expected uint8 (H,W,3) pixels, got {x.dtype} {x.shape}")
            x = to_tensor(np.array(x))  # a copy: arrays from PIL are read-only
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
            raise MaskgitError(f"image {i}: expected a PIL image, a uint8 (H,W,3) array or a (3,H,W) tensor")
        if not any_size and tuple(x.shape[1:]) != (self.size, self.size):
            raise MaskgitError(
                f"image {i} is {x.shape[2]}x{x.shape[1]}, but the model inpaints {self.size}x{self.size} images"
            )
        return x.float()

    def _holes(self, m, i: int, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """One mask as a bool (H,W) tensor, True = hole (lab masks: 0 = hole; bool masks: True = known), of
        ``shape`` (default: the model's size)."""
        from PIL import Image

        if isinstance(m, Image.Image):
            m = np.asarray(m.convert("L"))
        if isinstance(m, torch.Tensor):
            m = m.cpu().numpy()
        m = np.asarray(m)
        shape = tuple(shape or (self.size, self.size))
        if m.ndim != 2 or m.shape != shape:
            raise MaskgitError(
                f"mask {i} is {m.shape[::-1]} but its image is {shape[::-1]} (width, height): they must match"
            )
        if m.dtype != np.bool_ and m.max() == 1:
            raise MaskgitError(
                f"mask {i} holds only the values 0 and 1; lab masks use 0 = hole and 255 = known (or pass a bool "
                "mask, True = known)"
            )
        return torch.from_numpy(~known_pixels(m))


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


FITS = ("auto", "crop", "resize", "none")


def fit_windows(holes: np.ndarray, size: int, mode: str, margin: float = 0.5) -> list:
    """The windows ``(y0, x0, height, width, own holes (height,width) bool)`` to inpaint for ``holes`` (H,W) bool.

    ``resize``: the whole image, one window. ``crop``: one window per group of touching holes (8-connected), a box
    around the group grown by ``margin`` of its size on every side for context, square and at least ``size`` pixels
    where the image allows, kept inside the image; its own holes are the group's. Images smaller than the token
    grid cannot be inpainted.
    """
    H, W = holes.shape
    if min(H, W) < 16:
        raise MaskgitError(f"the image is {W}x{H}: too small to inpaint (at least 16x16 pixels)")
    if mode == "resize":
        return [(0, 0, H, W, holes)] if holes.any() else []
    from scipy import ndimage

    labels, count = ndimage.label(holes, structure=np.ones((3, 3), dtype=bool))
    windows = []
    for k, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
        bh, bw = ys.stop - ys.start, xs.stop - xs.start
        side = max(size, int(np.ceil(max(bh, bw) * (1 + 2 * margin))))
        h, w = min(max(side, bh), H), min(max(side, bw), W)
        cy, cx = (ys.start + ys.stop) // 2, (xs.start + xs.stop) // 2
        y0, x0 = min(max(cy - h // 2, 0), H - h), min(max(cx - w // 2, 0), W - w)
        windows.append((y0, x0, h, w, labels[y0 : y0 + h, x0 : x0 + w] == k))
    return windows
