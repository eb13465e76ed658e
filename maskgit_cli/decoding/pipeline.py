"""Inpainting from Python in three lines: :class:`Inpainter`, the one object every front end uses.

    from maskgit_cli import Inpainter
    pipe = Inpainter.from_pretrained()                 # the shipped emoji64 weights, or a model folder / Hub id
    result = pipe(image, mask)                         # PIL image(s) in, PIL image(s) out

Images are PIL images (as viewers show them: EXIF orientation applied), uint8 numpy arrays (H,W,3), uint8 tensors
(3,H,W) or float tensors (3,H,W) in [0,1], or lists of them, of any size; masks follow the lab's convention (0 =
hole, 255 = known), come as the image's own alpha channel (alpha 0 = hole) when no mask is given, or are bool
arrays/tensors given as ``known=`` (True = known) or ``holes=`` (True = hole); :mod:`maskgit_cli.data.inputs`
turns them all into holes. The models are loaded once by
:meth:`Inpainter.from_pretrained` and the code patches for guidance computed once per pipeline.

`maskgit inpaint` (:func:`maskgit_cli.decoding.folders.inpaint_folder`) and `maskgit serve` call
:meth:`Inpainter.fill`, the method behind ``__call__``: the same image, mask, settings and seed give the same pixels
from the shell, from Python and in the browser, because every image's random streams are keyed by what it carries
(:func:`stream_key`: its pixels and holes), not by where it stands in a folder or a list (docs/decoding.md,
"Random streams").

Images of another size than the model's (docs/decoding.md, "Any image size") are inpainted in *windows*: ``crop``
takes a square window around each group of touching holes, with context, ``resize`` the whole image; each window is
resized to the model's size, inpainted, resized back and pasted into its own holes only, so every known pixel of the
input comes back bit-identical.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from maskgit_cli.choices import FITS, check_choice
from maskgit_cli.data.images import to_tensor, to_uint8
from maskgit_cli.data.inputs import holes_gray, pair_inputs
from maskgit_cli.data.masks import token_mask_for
from maskgit_cli.decoding.inpaint import (
    InpaintSettings,
    auto_dilate,
    inpaint_batch,
    mask_tile,
    prepare_models,
    with_defaults,
)
from maskgit_cli.decoding.replay import StepsCapped, cap_steps
from maskgit_cli.decoding.settings import LAB_SETTINGS
from maskgit_cli.errors import MaskgitError
from maskgit_cli.model_card import card_for, names_a_model, resolve_model
from maskgit_cli.runtime import resolve_device
from maskgit_cli.viz import make_grid

MIN_SIDE = 16  # the default weights' token grid side: a smaller image has fewer pixels than tokens
MAX_WINDOWS = 256  # fit crop: an image whose holes need more windows is refused (fit resize takes it whole)
WINDOW_BATCH = 64  # windows inpainted together (a batch of model-size images, inpaint's --batch-size, is one)
DECODE_ROWS = 256  # windows x draws decoded together: more --draws, fewer windows a batch (up to 4: WINDOW_BATCH)
_KEY_BITS = (1 << 63) - 1  # random stream keys are non-negative int64


def stream_key(pixels: np.ndarray, holes: np.ndarray) -> int:
    """The key of an image's random streams: 63 bits of the sha256 of its size, its known pixels ((H,W,3) uint8, as
    decoded; what lies under a hole counts as 0, since the result never depends on it) and its holes ((H,W) bool).
    The same image and mask have the same key in any folder, list or front end, whatever sorts before them
    (docs/decoding.md, "Random streams")."""
    holes = np.asarray(holes, dtype=bool)
    known = np.where(holes[..., None], 0, np.asarray(pixels, dtype=np.uint8)).astype(np.uint8)
    digest = hashlib.sha256(np.asarray(pixels.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(known).tobytes())
    digest.update(np.packbits(holes).tobytes())
    return int.from_bytes(digest.digest()[:8], "little") & _KEY_BITS


def stream_keys(images: Sequence[np.ndarray], holes: Sequence[np.ndarray], numbers: Sequence[int], lab: bool):
    """The random stream keys of ``images`` with ``holes``: :func:`stream_key` of each, or with ``lab`` (the lab's
    inference) their ``numbers``, the lab's image numbers (a folder's sorted index, a list's position), as the
    lab's reference draws them (tests/test_lab_reference.py)."""
    if lab:
        return [int(n) for n in numbers]
    return [stream_key(px, hl) for px, hl in zip(images, holes)]


@dataclass
class Filled:
    """One input inpainted once (one sample), as :meth:`Inpainter.fill` returns it."""

    image: np.ndarray  # (H,W,3) uint8, the input's size
    tokens_generated: int  # summed over the windows
    still_masked: list[int]  # tokens still masked after every step, summed over the windows ([]: nothing to fill)
    windows: list[tuple[int, int, int, int]]  # (x0, y0, width, height) of every window inpainted at the model's size
    inputs: list[np.ndarray]  # per window: what the model saw, (size,size,3) uint8 with the holes gray
    outputs: list[np.ndarray]  # per window: what the model made of it, (size,size,3) uint8
    step_images: list[list[np.ndarray]] = field(default_factory=list)  # per window, if recorded: one per step
    step_masks: list[list[np.ndarray]] = field(default_factory=list)  # per window, if recorded: one per step + 1
    # per window, if recorded: the token masks (h,w) bool, True = still masked, before step 1 and after every step
    step_tokens: list[list[np.ndarray]] = field(default_factory=list)


@dataclass
class InpaintOutput:
    """What :meth:`Inpainter.__call__` returns with ``return_steps=True``: the results and, per result, the decoded
    image and the token mask (white = known, black = still masked) after every step, at the model's resolution
    (an input inpainted in several windows shows them side by side)."""

    images: list  # PIL images (num_samples per input, input-major)
    step_images: list = field(default_factory=list)  # per result: list of PIL images, one per step
    step_masks: list = field(default_factory=list)  # per result: list of PIL images, one per step + 1
    windows: list = field(default_factory=list)  # per result: the (x0, y0, width, height) of its windows


class Inpainter:
    """A loaded transformer + VQGAN that inpaints images held in memory (see the module docstring).

    ``settings``: an :class:`InpaintSettings`, or flat options (schedule=, total_iter=, sweet_spot=, sampler=,
    pixel_guidance=, seed=, lab=, ...), the defaults of every call. ``code_patches``: for known-pixel guidance
    (default: those stored with the transformer file, else decoded from the VQGAN once).
    """

    def __init__(
        self,
        transformer,
        vqgan,
        device="cpu",
        any_vqgan: bool = False,
        code_patches=None,
        settings: InpaintSettings | None = None,
        **options,
    ):
        self.device = torch.device(device)
        self.settings = settings if settings is not None else InpaintSettings.from_options(**options)
        self.defaults = self.settings.flat()
        self._sources = (transformer, vqgan, code_patches, any_vqgan)
        self.ready = prepare_models(transformer, vqgan, self.device, self.settings, code_patches, any_vqgan)
        self.size = self.ready.vqgan.config.img_resolution  # a window's side: the VQGAN's images
        self.grid = self.ready.vqgan.config.latent_resolution  # its token grid's side
        self.card = card_for(transformer)  # the model card (maskgit_cli.model_card): what it knows; {} when none

    @classmethod
    def from_pretrained(
        cls, transformer=None, vqgan=None, device: str = "auto", *, cache_dir=None, download: bool = False, **options
    ) -> Inpainter:
        """Load a model once: a model folder (what `maskgit fit` writes: vqgan.safetensors, transformer.safetensors,
        card.json), the Hugging Face Hub id of one (``ORG/NAME``, from the local Hub cache, or ``cache_dir``;
        ``download=True`` fetches it when the cache lacks it), or a transformer file and its VQGAN (default: the
        shipped emoji64 weights, themselves the model folder ``weights/``). ``options``: defaults for every call
        (schedule, total_iter, sweet_spot, sampling, seed, lab, ...)."""
        if names_a_model(transformer):
            if vqgan is not None:
                raise MaskgitError(f"{transformer} is a model, which holds its VQGAN: leave vqgan out")
            folder = resolve_model(transformer, cache_dir, download)
            transformer, vqgan = folder.transformer, folder.vqgan
        transformer, vqgan = with_defaults(transformer, vqgan)
        return cls(transformer, vqgan, resolve_device(device), **options)

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask=None,
        num_samples: int = 1,
        return_steps: bool = False,
        fit: str = "auto",
        on_step: Callable | None = None,
        *,
        known=None,
        holes=None,
        **settings,
    ):
        """Inpaint ``image`` where its mask says hole; a list of images (and masks) gives a list of results.

        The mask, one per image or one for all (:mod:`maskgit_cli.data.inputs`): ``mask`` a lab mask (0 = hole,
        255 = known) or a PIL image (its alpha channel if it has transparent pixels); ``known`` a bool mask, True =
        known; ``holes`` a bool mask, True = hole; none of them: each image's alpha channel (alpha 0 = hole). A bool
        mask given as ``mask`` is refused: its keyword says what True means.
        ``num_samples`` > 1 gives that many results per input, from different random streams (seed, seed+1, ...).
        ``settings`` override the pipeline's defaults for this call (e.g. ``schedule="square"``, ``seed=3``).
        ``fit``: how an image of another size than the model's is inpainted: ``crop`` (a window around each group
        of holes, with context; the default for images larger than the model), ``resize`` (the whole image; the
        default for smaller ones) or ``none`` (model-size images only). Known pixels are always returned unchanged
        (unless ``composite=False``). ``on_step(step, images, masks, still_masked)`` is called after every decoding
        step of every sample, as it happens, with the step (1-based), PIL images of every window's prediction and
        token mask (white = known, black = still masked), and the tokens still masked in each of those windows
        (a list of ints, one per image in ``images``).
        """
        if num_samples < 1:
            raise MaskgitError(f"num_samples {num_samples}: must be at least 1")
        single, pixels, hole_masks = pair_inputs(image, mask, known, holes)
        watch = None if on_step is None else _pil_step_callback(on_step)
        record = range(len(pixels)) if return_steps else ()
        per_sample = [
            self.fill(pixels, hole_masks, k, None, record, fit, watch, **settings) for k in range(num_samples)
        ]
        results = [per_sample[k][i] for i in range(len(pixels)) for k in range(num_samples)]
        pil = [_pil(r.image) for r in results]
        if return_steps:
            steps = [[_pil(side_by_side(w)) for w in zip(*r.step_images)] for r in results]
            masks_out = [[_pil(side_by_side(w)) for w in zip(*r.step_masks)] for r in results]
            return InpaintOutput(pil, steps, masks_out, [r.windows for r in results])
        return pil[0] if single and num_samples == 1 else pil

    @torch.no_grad()
    def fill(
        self,
        images: Sequence[np.ndarray],
        holes: Sequence[np.ndarray],
        sample: int = 0,
        ids: Sequence[int] | None = None,
        record: Sequence[int] = (),
        fit: str = "auto",
        on_step: Callable | None = None,
        names: Sequence[str] | None = None,
        **settings,
    ) -> list[Filled]:
        """Inpaint uint8 (H,W,3) ``images`` where ``holes`` (H,W) bool are True: one batch through the models.

        ``sample``: the random streams of seed + sample. ``ids``: the images' numbers (default 0, 1, ...; a folder
        passes each file's index), which key the random streams of the lab's inference (``lab``) only; otherwise
        every image's streams are keyed by its pixels and holes (:func:`stream_keys`), so a result depends neither
        on the batch nor on the folder it is in.
        ``record``: indices of the images whose per-step images and masks are kept. ``on_step(step, images, masks,
        still_masked)``: after every step (1-based), the (R,3,size,size) predictions, (R,h,w) token masks and the
        R counts of tokens still masked of the recorded images' windows (all windows when none are recorded).
        Every model-size image is one window; any other size is cut into windows by ``fit`` (:func:`fit_windows`;
        this is where ``fit`` is checked). The windows are inpainted :data:`WINDOW_BATCH` at a time (fewer with
        more than four ``draws``: :data:`DECODE_ROWS` windows x draws; a call of more reports each batch's steps
        in turn; one with recorded images only the batches that hold their windows).
        ``names``: what errors call the images (default "image 0", ...).
        """
        check_choice(fit, FITS, "fit")
        s = self._settings(sample, settings)
        keys = stream_keys(images, holes, range(len(images)) if ids is None else ids, s.lab)
        names = [f"image {i}" for i in range(len(images))] if names is None else list(names)
        jobs = self._jobs(images, holes, fit, names)
        filled = [Filled(px.copy(), 0, [], [], [], []) for px in images]
        patches = self._patches(s) if jobs else None
        watch = None if on_step is None else _counting(on_step)
        recorded = set(record)
        for run, part in self._capped(jobs, s):  # T capped at each image's masked tokens (replay.cap_steps)
            per_batch = max(1, min(WINDOW_BATCH, DECODE_ROWS // run.draws))  # bounded work and memory
            for start in range(0, len(part), per_batch):
                chunk = part[start : start + per_batch]
                pixels = to_tensor(np.stack([j.pixels for j in chunk])).to(self.device)
                hole_t = torch.from_numpy(np.stack([j.holes for j in chunk])).to(self.device)
                window_ids = torch.tensor(
                    [(keys[j.image] + (j.index << 32)) & _KEY_BITS for j in chunk], device=self.device
                )
                rows = [r for r, j in enumerate(chunk) if j.image in recorded]
                hook = None if recorded and not rows and len(jobs) > per_batch else watch  # another batch's windows
                with self._normalization(run):
                    batch = inpaint_batch(
                        self.ready.transformer, self.ready.vqgan, pixels, hole_t, run, window_ids, rows, patches, hook
                    )
                decoded = to_uint8(batch.images, run.rounding)
                inputs = to_uint8(holes_gray(pixels, hole_t), run.rounding)
                for r, job in enumerate(chunk):
                    _add_window(filled[job.image], job.window, batch, r, decoded[r], inputs[r], self.size, run)
        return filled

    def _jobs(self, images, holes, fit: str, names: list[str]) -> list[_Job]:
        """Every window of every image, at the model's size (:func:`windows_for`, once per image)."""
        jobs = []
        for i, (px, hl) in enumerate(zip(images, holes)):
            try:
                windows = windows_for(px.shape[:2], hl, self.size, fit, self.grid)
            except MaskgitError as e:
                raise MaskgitError(f"{names[i]}: {e}") from None
            for w, window in enumerate(windows):
                jobs.append(_Job(i, w, window, *_to_model_size(px, hl, window, self.size)))
        return jobs

    def token_masks(self, images, holes, fit: str = "auto", **settings) -> list[list[np.ndarray]]:
        """Per image, per window (:func:`windows_for`): the tokens its decode fills, (h,w) bool, True = masked
        before step 1 (the token rule and ``dilate`` of the settings: the pipeline's with ``settings`` over them)."""
        s = self._settings(0, settings)
        names = [f"image {i}" for i in range(len(images))]
        found: list[list[np.ndarray]] = [[] for _ in images]
        jobs = self._jobs(images, holes, fit, names)
        for job, masked in zip(jobs, self._token_masks(jobs, s)):
            found[job.image].append(masked)
        return found

    def _token_masks(self, jobs: list, s: InpaintSettings) -> list[np.ndarray]:
        """The token mask each job's decode fills ((h,w) bool), as :func:`encode_inputs` picks them."""
        if not jobs:
            return []
        holes = torch.from_numpy(np.stack([j.holes for j in jobs]))
        masks = token_mask_for(holes, self.grid, s.token_mask, auto_dilate(s.dilate, self.ready.vqgan.config))
        return list(masks.numpy())

    def _capped(self, jobs: list, s: InpaintSettings) -> list[tuple[InpaintSettings, list]]:
        """``jobs`` grouped by the settings they are decoded with: T capped at each image's masked tokens (the
        most of its windows; :func:`~maskgit_cli.decoding.replay.cap_steps`), one :class:`StepsCapped` warning a
        call. An image's settings depend on its own holes alone, so its pixels do not depend on its batch."""
        if not jobs or s.decode.counts != "clamped":
            return [(s, jobs)]
        most: dict[int, int] = {}
        for job, masked in zip(jobs, self._token_masks(jobs, s)):
            most[job.image] = max(most.get(job.image, 0), int(masked.sum()))
        groups: dict[int, tuple[InpaintSettings, list]] = {}
        for job in jobs:
            decode = cap_steps(s.decode, most[job.image])
            groups.setdefault(decode.total_iter, (replace(s, decode=decode), []))[1].append(job)
        capped = [n for n in most.values() if 0 < n < s.decode.total_iter]
        if capped:
            warnings.warn(StepsCapped(s.decode.total_iter, capped), stacklevel=2)
        return list(groups.values())

    def _settings(self, sample: int, overrides: dict) -> InpaintSettings:
        """The settings of one call: the pipeline's, with ``overrides`` and the seed of ``sample``. A call's ``lab``
        that differs from the pipeline's sets what ``--lab`` sets (:data:`LAB_SETTINGS`, or back to their defaults
        with ``lab=False``) over the pipeline's settings, the call's other overrides over them: ``pipe(image, mask,
        lab=True)`` decodes as a pipeline made with ``lab=True``. A call's normalization is checked as ``--lab``
        checks it (a VQGAN without the lab's test statistics is refused) and used for that call
        (:meth:`_normalization`); guidance keeps the pipeline's (its code patches were made with it)."""
        if not overrides:
            s = self.settings
        else:
            base = dict(self.defaults)
            lab = overrides.get("lab")
            if lab is not None and bool(lab) != self.settings.lab:
                switched = InpaintSettings.from_options(lab=bool(lab)).flat()
                base.update({k: switched[k] for k in LAB_SETTINGS})
            s = InpaintSettings.from_options(**{**base, **overrides})
        if s.normalization != self.settings.normalization:
            self.ready.vqgan.config.normalization(s.normalization)  # --normalization test's check, before any work
            if s.pixel_guidance > 0:
                raise MaskgitError(
                    f"pixel guidance with normalization {s.normalization!r} (lab={s.lab}), not the Inpainter's "
                    f"{self.settings.normalization!r}: guidance's code patches are made with the statistics "
                    "chosen when the Inpainter is made, e.g. Inpainter.from_pretrained(..., "
                    f"normalization={s.normalization!r}); or pixel_guidance=0"
                )
        return replace(s, decode=replace(s.decode, seed=s.decode.seed + sample)) if sample else s

    @contextmanager
    def _normalization(self, s: InpaintSettings):
        """The VQGAN encodes and decodes with the call's statistics (``s.normalization``), then the pipeline's
        again: a call with ``lab=True`` on a pipeline made without it uses the lab's test statistics."""
        if s.normalization == self.settings.normalization:
            yield
            return
        vqgan = self.ready.vqgan
        vqgan.use_normalization(s.normalization)
        try:
            yield
        finally:
            vqgan.use_normalization(self.settings.normalization)

    def _patches(self, s: InpaintSettings) -> torch.Tensor | None:
        """The code patches for known-pixel guidance, prepared once (on the first call that needs them)."""
        if s.pixel_guidance <= 0:
            return None
        if self.ready.guide is None:
            transformer, vqgan, code_patches, any_vqgan = self._sources
            self.ready = prepare_models(transformer, vqgan, self.device, s, code_patches, any_vqgan)
        return self.ready.guide.patches


@dataclass
class _Job:
    """One window of one image, as the model inpaints it."""

    image: int  # the image's index in the batch
    index: int  # the window's index in the image
    window: tuple  # (y0, x0, height, width, own holes), see fit_windows
    pixels: np.ndarray  # (size,size,3) uint8
    holes: np.ndarray  # (size,size) bool


def _add_window(f: Filled, window, batch, r: int, decoded: np.ndarray, shown: np.ndarray, size: int, s):
    """Window ``r`` of the batch into its image's :class:`Filled`: pasted, listed, its counts added (``s``: the
    call's :class:`InpaintSettings`)."""
    _paste(f.image, decoded, window, size, s.composite)
    y0, x0, h, w, _ = window
    f.windows.append((x0, y0, w, h))
    f.inputs.append(shown)
    f.outputs.append(decoded)
    f.tokens_generated += int(batch.token_masks[r].sum())
    counts = batch.still_masked[r].tolist()
    f.still_masked = [a + b for a, b in zip(f.still_masked, counts)] if f.still_masked else counts
    if r in batch.step_images:
        f.step_images.append(list(to_uint8(torch.stack(batch.step_images[r]), s.rounding)))
        f.step_masks.append([mask_tile(m, size) for m in batch.step_masks[r]])
        f.step_tokens.append([m.cpu().numpy() for m in batch.step_masks[r]])


def windows_for(shape: tuple[int, int], holes: np.ndarray, size: int, fit: str, min_side: int = MIN_SIDE) -> list:
    """The windows (:func:`fit_windows`) an image of ``shape`` (H,W) is inpainted in: a model-size image is one
    window (itself), whatever its holes; another size needs ``fit`` crop or resize (auto: crop when both sides are
    larger than the model's, resize otherwise). ``min_side``: the model's token grid side."""
    h, w = shape
    if (h, w) == (size, size):
        return [(0, 0, size, size, holes)]
    if fit == "none":
        raise MaskgitError(
            f"the image is {w}x{h}, but the model inpaints {size}x{size} images (fit crop or resize takes any size)"
        )
    if fit == "auto":
        fit = "crop" if min(h, w) > size else "resize"
    return fit_windows(holes, size, fit, min_side=min_side)


def window_scales(windows, size: int) -> list[list[float]]:
    """The scale of each window ``(x0, y0, width, height)`` inpainted at ``size`` x ``size``: image pixels per model
    pixel, across and down (what report.json records beside the windows)."""
    return [[round(w / size, 4), round(h / size, 4)] for _, _, w, h in windows]


def fit_windows(
    holes: np.ndarray,
    size: int,
    mode: str,
    margin: float = 0.5,
    min_side: int = MIN_SIDE,
    max_windows: int = MAX_WINDOWS,
) -> list:
    """The windows ``(y0, x0, height, width, own holes (height,width) bool)`` to inpaint for ``holes`` (H,W) bool.

    ``resize``: the whole image, one window. ``crop``: one window per group of touching holes (8-connected), a box
    around the group grown by ``margin`` of its size on every side for context, square and at least ``size`` pixels
    where the image allows, kept inside the image; its own holes are the group's. Groups share a window wherever
    that costs no resolution (:func:`_merge_groups`: a speckled or dithered mask makes a window per ``size`` / (1 +
    2 ``margin``) pixels square of specks, not one per speck). A plan of more than ``max_windows`` windows is
    refused (one line saying to use resize). Images smaller than the token grid (``min_side`` pixels a side, the
    model's grid) cannot be inpainted.
    """
    H, W = holes.shape
    if min(H, W) < min_side:
        raise MaskgitError(f"the image is {W}x{H}: too small to inpaint (at least {min_side}x{min_side} pixels)")
    if mode == "resize":
        return [(0, 0, H, W, holes)] if holes.any() else []
    from scipy import ndimage  # only here, where holes are grouped: about 0.3 s to import, for every inpaint else

    labels, count = ndimage.label(holes, structure=np.ones((3, 3), dtype=bool))
    if not count:
        return []
    boxes = np.array([(ys.start, xs.start, ys.stop, xs.stop) for ys, xs in ndimage.find_objects(labels)])
    cells, boxes = _by_cell(boxes, int(size / (1 + 2 * margin)))
    group, boxes = _merge_groups(boxes, lambda b: _window_side(b, size, margin, H, W))
    group = group[cells]
    if len(boxes) > max_windows:
        raise MaskgitError(
            f"the holes need {len(boxes)} windows (at most {max_windows}): inpaint the whole image at once with "
            '--fit resize (fit="resize" in Python), or give fewer, larger holes'
        )
    owner = np.concatenate([[-1], group])  # label -> its window; 0 (not a hole) -> none
    windows = []
    for g, box in enumerate(boxes):
        y0, x0, h, w = _crop_window(box, size, margin, H, W)
        windows.append((y0, x0, h, w, owner[labels[y0 : y0 + h, x0 : x0 + w]] == g))
    return windows


def _merge_groups(boxes: np.ndarray, side) -> tuple[np.ndarray, np.ndarray]:
    """Groups of holes (their boxes (y0, x0, y1, x1), in label order) gathered into shared windows: a group joins
    the first earlier one whose window, around both boxes, is no larger (``side``: the larger side of the windows
    of boxes (n,4)) than the larger of their own two, so no hole is inpainted at a coarser scale than alone; again
    over the gathered boxes until nothing joins. Returns (each group's window, numbered in label order; the windows'
    boxes)."""
    group = np.arange(len(boxes))
    while True:
        own = side(boxes)
        out = np.empty_like(boxes)
        cost = np.empty_like(own)
        member = np.empty(len(boxes), dtype=np.int64)
        k = 0
        for i, box in enumerate(boxes):
            if k:
                union = np.concatenate([np.minimum(out[:k, :2], box[:2]), np.maximum(out[:k, 2:], box[2:])], axis=1)
                joint = side(union)
                free = np.flatnonzero(joint <= np.maximum(cost[:k], own[i]))
                if free.size:
                    c = free[0]
                    out[c], cost[c], member[i] = union[c], joint[c], c
                    continue
            out[k], cost[k], member[i] = box, own[i], k
            k += 1
        group = member[group]
        if k == len(boxes):
            return group, out[:k]
        boxes = out[:k]


def _by_cell(boxes: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Groups of holes whose boxes lie within one ``cell`` x ``cell`` square of a grid gathered at once (any boxes
    that fit in such a square share a window of the model's size, so this is :func:`_merge_groups`' rule, made fast
    for the thousands of specks of a dithered mask). Returns (each box's gathered box, numbered in the order of its
    first box; the gathered boxes)."""
    cell = max(cell, 1)
    cy, cx = boxes[:, 0] // cell, boxes[:, 1] // cell
    inside = (boxes[:, 2] <= (cy + 1) * cell) & (boxes[:, 3] <= (cx + 1) * cell)
    key = np.where(inside, cy * (int(cx.max()) + 1) + cx, -1 - np.arange(len(boxes)))
    _, first, where = np.unique(key, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    group = rank[where.ravel()]
    out = np.empty((len(first), 4), dtype=boxes.dtype)
    out[:, :2] = np.iinfo(boxes.dtype).max
    out[:, 2:] = np.iinfo(boxes.dtype).min
    np.minimum.at(out[:, 0], group, boxes[:, 0])
    np.minimum.at(out[:, 1], group, boxes[:, 1])
    np.maximum.at(out[:, 2], group, boxes[:, 2])
    np.maximum.at(out[:, 3], group, boxes[:, 3])
    return group, out


def _window_side(boxes: np.ndarray, size: int, margin: float, H: int, W: int) -> np.ndarray:
    """The larger side of :func:`_crop_window`'s window around each box (n,4): what sets the scale it is
    inpainted at."""
    bh, bw = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(size, np.ceil(np.maximum(bh, bw) * (1 + 2 * margin)).astype(np.int64))
    return np.maximum(np.minimum(np.maximum(side, bh), H), np.minimum(np.maximum(side, bw), W))


def _crop_window(box, size: int, margin: float, H: int, W: int) -> tuple[int, int, int, int]:
    """(y0, x0, height, width) of the window around a box (y0, x0, y1, x1) of holes: the box grown by ``margin`` of
    its size on every side, square and at least ``size`` where the image (H,W) allows, inside the image."""
    by0, bx0, by1, bx1 = (int(v) for v in box)
    bh, bw = by1 - by0, bx1 - bx0
    side = max(size, int(np.ceil(max(bh, bw) * (1 + 2 * margin))))
    h, w = min(max(side, bh), H), min(max(side, bw), W)
    cy, cx = (by0 + by1) // 2, (bx0 + bx1) // 2
    return min(max(cy - h // 2, 0), H - h), min(max(cx - w // 2, 0), W - w), h, w


def _to_model_size(pixels: np.ndarray, holes: np.ndarray, window, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A window's pixels (bicubic) and holes at the model's size; a model pixel is a hole wherever any of the
    pixels it stands for is one. Holes are made gray first, so what lies under them never leaks into the known
    pixels around them when resizing (the result does not depend on it)."""
    y0, x0, h, w, _ = window
    crop, hole = pixels[y0 : y0 + h, x0 : x0 + w], holes[y0 : y0 + h, x0 : x0 + w]
    if (h, w) == (size, size):
        return crop, hole
    crop = np.asarray(Image.fromarray(holes_gray(crop, hole)).resize((size, size), Image.BICUBIC))
    hole = np.asarray(Image.fromarray(hole.astype(np.uint8) * 255).resize((size, size), Image.BOX)) > 0
    return crop, hole


def _paste(out: np.ndarray, result: np.ndarray, window, size: int, composite: bool) -> None:
    """Put a window's model-size ``result`` back into ``out`` (H,W,3): resized to the window, into the window's own
    holes only with ``composite`` (every known pixel stays as it was), over the whole window without."""
    y0, x0, h, w, own = window
    if (h, w) != (size, size):
        result = np.asarray(Image.fromarray(result).resize((w, h), Image.BICUBIC))
    region = out[y0 : y0 + h, x0 : x0 + w]
    if composite:
        region[own] = result[own]
    else:
        region[:] = result


def _counting(on_step: Callable) -> Callable:
    """:meth:`Inpainter.fill`'s ``on_step(step, images, masks, still_masked)`` (step 1-based, the tokens still masked
    per window) over :func:`~maskgit_cli.decoding.inpaint.inpaint_batch`'s ``on_step(t, images, masks)``."""

    def hook(t: int, images: torch.Tensor, token_masks: torch.Tensor) -> None:
        on_step(t + 1, images, token_masks, token_masks.flatten(1).sum(1).tolist())

    return hook


def _pil_step_callback(on_step: Callable) -> Callable:
    """``on_step(step, images, masks, still_masked)`` with PIL images, from :meth:`Inpainter.fill`'s tensors."""

    def hook(t: int, images: torch.Tensor, token_masks: torch.Tensor, still_masked: list[int]) -> None:
        size = images.shape[-1]
        pictures = [_pil(a) for a in to_uint8(images)]
        on_step(t, pictures, [_pil(mask_tile(m, size)) for m in token_masks], still_masked)

    return hook


def side_by_side(tiles) -> np.ndarray:
    """One window's picture, or several windows' side by side with a gray separator."""
    return tiles[0] if len(tiles) == 1 else make_grid([list(tiles)], pad=2)


def _pil(array: np.ndarray):
    return Image.fromarray(array)
