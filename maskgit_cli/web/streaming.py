"""Decoding step by step: :func:`run_steps` runs the Inpainter in a thread and yields every step as it happens.

The Inpainter reports each step through ``on_step(t, images, masks, still_masked)``; the page shows the images and
the token masks, and records the count of tokens still masked. Closing the stream (the tab went away) stops the
decode at its next step. :class:`Replay` keeps the first sample's steps for the replay after Done.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from maskgit_cli.decoding.pipeline import side_by_side
from maskgit_cli.decoding.replay import marked_step, order_map, order_picture, write_animation


@dataclass
class Step:
    """One decoding step as it happens: the decoded prediction and the token mask (white = known, black = still
    masked) at the model's resolution, side by side when the image is inpainted in several windows."""

    sample: int  # 0-based
    step: int  # 1-based
    image: object  # PIL image
    mask: object  # PIL image
    still_masked: int  # tokens still masked after this step, summed over the windows


class _Cancelled(Exception):
    """Raised inside the decode thread once the page stopped listening (the tab was closed)."""


def run_steps(pipe, image, mask, **call) -> Iterator:
    """Inpaint with ``pipe`` (an :class:`Inpainter`), yielding a :class:`Step` after every decoding step of every
    sample as it happens, then the list of results (PIL images, one per sample).

    ``call``: the Inpainter call's arguments (``num_samples=``, ``fit=``, decoding options); the results are the
    pixels ``pipe(image, mask, **call)`` returns. Closing the generator early stops the decode at its next step."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    worker = threading.Thread(
        target=_decode, args=(pipe, image, mask, call, events, stop), name="maskgit-serve-decode", daemon=True
    )
    worker.start()
    try:
        while True:
            event = events.get()
            if isinstance(event, Step):
                yield event
                continue
            kind, payload = event
            if kind == "error":
                raise payload
            yield payload if isinstance(payload, list) else [payload]
            return
    finally:
        stop.set()
        worker.join()


def _decode(pipe, image, mask, call: dict, events: queue.Queue, stop: threading.Event) -> None:
    """The decode thread: every step onto ``events`` as a :class:`Step`, then ``("done", results)`` or
    ``("error", exception)``; ``stop`` set makes the next step raise :class:`_Cancelled`."""
    sample = -1

    def on_step(t: int, images: list, masks: list, still_masked: list[int]) -> None:
        nonlocal sample
        if stop.is_set():
            raise _Cancelled
        if t == 1:
            sample += 1
        events.put(Step(sample, t, _side_by_side(images), _side_by_side(masks), sum(still_masked)))

    try:
        events.put(("done", pipe(image, mask, on_step=on_step, **call)))
    except BaseException as e:  # noqa: BLE001 - handed to the generator, which raises it
        events.put(("error", e))


def _side_by_side(tiles: list):
    """One window's picture, or several windows' side by side (gray separators), as the pipeline shows steps."""
    return tiles[0] if len(tiles) == 1 else Image.fromarray(side_by_side([np.asarray(t) for t in tiles]))


@dataclass
class Replay:
    """The frames a decode keeps for its replay after Done (the first sample's): every step's prediction with its
    still-masked tokens marked, its token mask, and at the end the order map (which step fixed each token).

    ``start``: the token masks before step 1, one per window ((h,w) bool, True = masked), as the decode fills them
    (:meth:`~maskgit_cli.decoding.pipeline.Inpainter.token_masks`); ``size``: the model's side."""

    start: list
    size: int
    steps: list = field(default_factory=list)  # PIL images: the predictions, still-masked tokens marked
    masks: list = field(default_factory=list)  # PIL images: the token masks (white = known, black = still masked)
    _masked: list = field(default_factory=list)  # (H,W) bool after every step, True = still masked

    def add(self, step: Step) -> Image.Image:
        """Keep ``step`` (of the first sample; others are ignored) and return its marked picture."""
        masked = np.asarray(step.mask.convert("L")) < 128
        marked = Image.fromarray(marked_step(np.asarray(step.image.convert("RGB")), masked))
        if step.sample == 0:
            self.steps.append(marked)
            self.masks.append(step.mask)
            self._masked.append(masked)
        return marked

    def order(self) -> Image.Image:
        """The order map of the kept steps, 4x enlarged, with its legend (windows side by side)."""
        k = self.size // self.start[0].shape[0]
        tiles = [np.where(m, 0, 255).astype(np.uint8).repeat(k, 0).repeat(k, 1) for m in self.start]
        before = np.asarray(_side_by_side([Image.fromarray(t) for t in tiles]).convert("L")) < 128
        order = order_map([before, *self._masked])
        return Image.fromarray(order_picture(order, len(self._masked), 4 * order.shape[0]))

    def frames(self) -> dict:
        """What the page keeps for the step slider: the marked steps, their token masks, and the order map."""
        return {"steps": self.steps, "masks": self.masks, "order": self.order()}

    def animation(self, shown: np.ndarray, result: np.ndarray, path) -> Path:
        """The steps as an animation at ``path`` (gif or webp): the input as the model sees it, the marked steps,
        the result; an image of another size than the model's gets its windows' steps alone, side by side."""
        frames = [np.asarray(p.convert("RGB")) for p in self.steps]
        if shown.shape == frames[0].shape:
            frames = [shown, *frames, result]
        return write_animation(frames, path)
