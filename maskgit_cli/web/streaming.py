"""Decoding step by step: :func:`run_steps` runs the Inpainter in a thread and yields every step as it happens.

The Inpainter reports each step through ``on_step(t, images, masks, still_masked)``; the page shows the images and
the token masks, and records the count of tokens still masked. Closing the stream (the tab went away) stops the
decode at its next step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from maskgit_cli.decoding.pipeline import side_by_side


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
