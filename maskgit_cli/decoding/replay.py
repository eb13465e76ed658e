"""A decode made watchable after the fact: step pictures with the still-masked tokens marked, the order map, the
animation of the steps, the chart of the still-masked counts, and the cap of T at the masked tokens.

Pure functions on numpy arrays and settings (no model, no torch): `maskgit inpaint --grids --animation`
(:mod:`maskgit_cli.decoding.folders`), the page (:mod:`maskgit_cli.web`) and the pipeline's cap
(:meth:`~maskgit_cli.decoding.pipeline.Inpainter.fill`) share them.

Masks here are bool arrays, True = still masked, at the token grid's resolution or any multiple of it (a token
mask tile at the model's size works as well as the token grid).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskgit_cli.errors import MaskgitError

TINT = np.array([255, 0, 255], dtype=np.float64)  # the brush's magenta: still-masked tokens, "hole not yet filled"
KNOWN_GRAY = (200, 200, 200)  # the order map's known tokens (never generated)
# A viridis-like ramp (dark blue -> green -> yellow) for the step that fixed each token: early dark, late bright.
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)
FRAME_MS = 300  # each step of the animation
LAST_FRAME_MS = 1500  # the result, held before the animation loops


class StepsCapped(UserWarning):
    """T was larger than the masked tokens of some images and was capped for them (:func:`cap_steps`): T and the
    masked tokens of each, and :func:`cap_message`'s line as the warning's text."""

    def __init__(self, total_iter: int, capped: list[int]):
        self.total_iter, self.capped = total_iter, list(capped)
        super().__init__(cap_message(total_iter, self.capped))


@contextmanager
def steps_capped() -> Iterator[list[StepsCapped]]:
    """Collects the :class:`StepsCapped` warnings of the work inside, as they come, into the list it gives (other
    warnings are shown as usual), for a caller that reports them once (`maskgit inpaint`: one line). Not for
    threads: Python's warning filters are global."""
    found: list[StepsCapped] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", StepsCapped)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if isinstance(message, StepsCapped):
                found.append(message)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield found


def merged_message(found: list[StepsCapped]) -> str | None:
    """One line for all the caps ``found`` (:func:`steps_capped`), as if one call had capped every image."""
    if not found:
        return None
    return cap_message(found[0].total_iter, [n for w in found for n in w.capped])


# ---------------------------------------------------------------------------------------------------------
# The cap of T


def cap_steps(decode, masked: int):
    """The decoding settings ``decode`` (a :class:`~maskgit_cli.decoding.settings.DecodeSettings`) for an image with
    ``masked`` tokens to fill: T (and a sweet spot above it) capped at ``masked``.

    Why: under the official count rule (``counts="clamped"``) every step with two or more tokens left fills at
    least one, so after at most N - 1 steps one token is left; every further step but the last feeds the model the
    same grid again and re-draws that token (T=256 on 87 tokens: 170 such steps, two thirds of the time; the Halton
    sampler has nothing left to reveal after N steps). The lab's rule (``counts="floor"``, ``--lab``) is run as
    written: no cap there. Nothing to fill (``masked`` 0) changes nothing either."""
    if decode.counts != "clamped" or masked < 1 or decode.total_iter <= masked:
        return decode
    sweet = None if decode.sweet_spot is None else min(decode.sweet_spot, masked)
    return replace(decode, total_iter=masked, sweet_spot=sweet)


def cap_message(total_iter: int, capped: list[int]) -> str | None:
    """The one line that says T was capped, from T and the masked tokens of every image it was capped for (None
    when none was)."""
    if not capped:
        return None
    extra = "the extra steps change nothing"
    if len(capped) == 1:
        return f"T={total_iter} exceeds the {capped[0]} masked tokens: capped at {capped[0]} — {extra}"
    return (
        f"T={total_iter} exceeds the masked tokens of {len(capped)} images ({min(capped)} to {max(capped)}): each "
        f"capped at its own count — {extra}"
    )


# ---------------------------------------------------------------------------------------------------------
# Pictures


def _at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask (h,w) at the resolution ``shape`` (H,W), a whole multiple of it (each cell a block)."""
    mask = np.asarray(mask, dtype=bool)
    ky, kx = shape[0] // mask.shape[0], shape[1] // mask.shape[1]
    if (mask.shape[0] * ky, mask.shape[1] * kx) != tuple(shape):
        raise ValueError(f"a {mask.shape[1]}x{mask.shape[0]} mask does not tile a {shape[1]}x{shape[0]} image")
    return mask.repeat(ky, 0).repeat(kx, 1)


def marked_step(image: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """A step's decoded prediction (H,W,3) uint8 with the tokens still ``masked`` marked: tinted magenta and
    hatched, so the hole visibly fills in from one step to the next; the fixed tokens and the known pixels are
    shown as decoded."""
    image = np.asarray(image, dtype=np.uint8)
    where = _at(masked, image.shape[:2])
    out = image.astype(np.float64)
    out[where] = 0.45 * out[where] + 0.55 * TINT
    ys, xs = np.indices(image.shape[:2])
    hatch = where & ((xs + ys) % 4 == 0)
    out[hatch] = 0.5 * out[hatch]
    return out.round().astype(np.uint8)


def order_map(masks: list[np.ndarray]) -> np.ndarray:
    """The step (1-based) that fixed each token, from the masks before step 1 and after every step (True = still
    masked): (h,w) int, 0 for the tokens that were known from the start. A token fixed at a step stays fixed."""
    masks = [np.asarray(m, dtype=bool) for m in masks]
    order = np.zeros(masks[0].shape, dtype=np.int64)
    for step, (before, after) in enumerate(zip(masks, masks[1:]), start=1):
        order[before & ~after] = step
    order[masks[-1]] = len(masks) - 1  # still masked after the last step recorded: the last step fills them
    return order


def ramp(values: np.ndarray, steps: int) -> np.ndarray:
    """Steps 1..``steps`` as :data:`RAMP` colors, (..., 3) uint8 (step 1 darkest, the last brightest)."""
    x = (np.asarray(values, dtype=np.float64) - 1) / max(steps - 1, 1) * (len(RAMP) - 1)
    low = np.clip(np.floor(x).astype(np.int64), 0, len(RAMP) - 2)
    frac = np.clip(x - low, 0, 1)[..., None]
    return (RAMP[low] * (1 - frac) + RAMP[low + 1] * frac).round().astype(np.uint8)


def order_picture(order: np.ndarray, steps: int, size: int, legend: bool = True) -> np.ndarray:
    """The order map (:func:`order_map`) as a picture ``size`` pixels wide per map: the step that fixed each token
    on :data:`RAMP` (1 .. ``steps``), known tokens light gray; with ``legend`` a band under it with the ramp and
    its range ("step 1" .. "step S", "gray: known")."""
    order = np.asarray(order)
    picture = np.where(order[..., None] > 0, ramp(np.maximum(order, 1), steps), np.array(KNOWN_GRAY, np.uint8))
    k = max(1, size // order.shape[0])
    picture = picture.astype(np.uint8).repeat(k, 0).repeat(k, 1)
    if not legend:
        return picture
    return np.concatenate([picture, _legend(picture.shape[1], steps)])


def _legend(width: int, steps: int) -> np.ndarray:
    """The order map's legend: the ramp from step 1 to ``steps`` and its labels, on white."""
    band = Image.new("RGB", (width, 30), (255, 255, 255))
    bar = ramp(np.linspace(1, steps, width - 8)[None].repeat(8, 0), steps)
    band.paste(Image.fromarray(bar), (4, 2))
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default()
    draw.text((4, 12), "step 1", fill=(0, 0, 0), font=font)
    last = f"{steps}"
    draw.text((width - 4 - draw.textlength(last, font=font), 12), last, fill=(0, 0, 0), font=font)
    draw.rectangle((width // 2 - 22, 14, width // 2 - 16, 20), fill=KNOWN_GRAY, outline=(0, 0, 0))
    draw.text((width // 2 - 12, 12), "known", fill=(0, 0, 0), font=font)
    return np.asarray(band)


def counts_chart(counts: list[int], start: int | None = None, width: int = 320, height: int = 110) -> np.ndarray:
    """A small bar chart (height, width, 3) uint8 of the tokens still masked after every step (``counts``), after
    a first bar of the ``start`` (before step 1, labeled 0) when given: the hole emptying at a glance, where a
    status line would list T numbers."""
    bars = counts if start is None else [start, *counts]
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    top, bottom, left, right = 14, height - 14, 30, width - 6
    draw.text((2, 0), f"tokens still masked, per step (max {max(bars, default=0)})", fill=(0, 0, 0), font=font)
    draw.line((left, bottom, right, bottom), fill=(0, 0, 0))
    if bars:
        peak = max(max(bars), 1)
        slot = (right - left) / len(bars)
        for k, c in enumerate(bars):
            x0 = left + k * slot
            y0 = bottom - (bottom - top) * c / peak
            draw.rectangle((x0, y0, max(x0, x0 + slot - 1), bottom), fill=tuple(int(v) for v in RAMP[1]))
        draw.text((2, top), str(peak), fill=(0, 0, 0), font=font)
        draw.text((left, bottom + 1), "0" if start is not None else "1", fill=(0, 0, 0), font=font)
        last = str(len(counts))
        draw.text((right - draw.textlength(last, font=font), bottom + 1), last, fill=(0, 0, 0), font=font)
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------------------
# The animation


def animation_frames(shown: np.ndarray, steps: list[np.ndarray], masks: list[np.ndarray], result: np.ndarray):
    """The frames of a decode's animation: the input as the model sees it (holes gray), every step's prediction
    with its still-masked tokens marked (``masks``: after each step), then the result."""
    return [shown, *(marked_step(img, m) for img, m in zip(steps, masks)), result]


def write_animation(frames: list[np.ndarray], path, scale: int = 4) -> Path:
    """``frames`` ((H,W,3) uint8, one size) as an animated GIF or WebP (by ``path``'s suffix, lossless WebP), each
    enlarged ``scale`` times (nearest: token cells stay sharp), :data:`FRAME_MS` a frame and the last held
    :data:`LAST_FRAME_MS`, looping; a frame equal to the one before it is merged into it, its time added (the last
    step is often the result itself). Returns the path."""
    path = Path(path)
    fmt = {".gif": "GIF", ".webp": "WEBP"}.get(path.suffix.lower())
    if fmt is None:
        raise MaskgitError(f"{path}: an animation is .gif or .webp")
    if not frames:
        raise ValueError("an animation needs at least one frame")
    kept, durations = [], []
    for k, frame in enumerate(np.asarray(f, dtype=np.uint8) for f in frames):
        ms = LAST_FRAME_MS if k == len(frames) - 1 else FRAME_MS
        if kept and np.array_equal(kept[-1], frame):  # as Pillow would merge them: one frame, both times
            durations[-1] += ms
            continue
        kept.append(frame)
        durations.append(ms)
    pictures = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in kept]
    options = {"lossless": True} if fmt == "WEBP" else {"optimize": False, "disposal": 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, format=fmt, save_all=True, append_images=pictures[1:], duration=durations, loop=0,
                     **options)  # fmt: skip
    return path
