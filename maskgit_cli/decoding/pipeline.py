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
    def __call__(self, image, mask, num_samples: int = 1, return_steps: bool = False, **settings):
        """Inpaint ``image`` where ``mask`` says hole; a list of images (and masks) gives a list of results.

        ``num_samples`` > 1 gives that many results per input, from different random streams (seed, seed+1, ...).
        ``settings`` override the pipeline's defaults for this call (e.g. ``schedule="square"``, ``seed=3``).
        """
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        masks = [mask] if single else list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(images)
        if len(masks) != len(images):
            raise MaskgitError(f"{len(images)} images but {len(masks)} masks: give one mask per image")
        if num_samples < 1:
            raise MaskgitError(f"num_samples {num_samples}: must be at least 1")
        pixels = torch.stack([self._image(x, i) for i, x in enumerate(images)]).to(self.device)
        holes = torch.stack([self._holes(m, i) for i, m in enumerate(masks)]).to(self.device)
        options = {**self.defaults, **settings}
        seed = int(options.pop("seed", 0))
        results, steps, step_masks = [], [], []
        rows = range(len(images)) if return_steps else ()
        per_sample = []
        for k in range(num_samples):
            s = InpaintSettings.from_options(seed=seed + k, **options)
            ids = torch.arange(len(images), device=self.device)
            patches = self.ready.guide.patches if self.ready.guide is not None else None
            per_sample.append(
                inpaint_batch(self.ready.transformer, self.ready.vqgan, pixels, holes, s, ids, rows, patches)
            )
        for i in range(len(images)):
            for batch in per_sample:
                results.append(_pil(to_uint8(batch.images[i : i + 1])[0]))
                if return_steps:
                    steps.append([_pil(a) for a in to_uint8(torch.stack(batch.step_images[i]))])
                    step_masks.append([_pil(mask_tile(m, self.size)) for m in batch.step_masks[i]])
        if return_steps:
            return InpaintOutput(results, steps, step_masks)
        return results[0] if single and num_samples == 1 else results

    def _image(self, x, i: int) -> torch.Tensor:
        """One input image as a float (3,H,W) tensor in [0,1] of the model's size."""
        from PIL import Image

        if isinstance(x, Image.Image):
            x = np.array(to_rgb(x))
        if isinstance(x, np.ndarray):
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
                raise MaskgitError(f"image {i}: expected uint8 (H,W,3) pixels, got {x.dtype} {x.shape}")
            x = to_tensor(np.array(x))  # a copy: arrays from PIL are read-only
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
            raise MaskgitError(f"image {i}: expected a PIL image, a uint8 (H,W,3) array or a (3,H,W) tensor")
        if tuple(x.shape[1:]) != (self.size, self.size):
            raise MaskgitError(
                f"image {i} is {x.shape[2]}x{x.shape[1]}, but the model inpaints {self.size}x{self.size} images"
            )
        return x.float()

    def _holes(self, m, i: int) -> torch.Tensor:
        """One mask as a bool (H,W) tensor, True = hole (lab masks: 0 = hole; bool masks: True = known)."""
        from PIL import Image

        if isinstance(m, Image.Image):
            m = np.asarray(m.convert("L"))
        if isinstance(m, torch.Tensor):
            m = m.cpu().numpy()
        m = np.asarray(m)
        if m.ndim != 2 or m.shape != (self.size, self.size):
            raise MaskgitError(f"mask {i}: expected ({self.size},{self.size}) values, got shape {m.shape}")
        if m.dtype != np.bool_ and m.max() == 1:
            raise MaskgitError(
                f"mask {i} holds only the values 0 and 1; lab masks use 0 = hole and 255 = known (or pass a bool "
                "mask, True = known)"
            )
        return torch.from_numpy(~known_pixels(m))


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)
