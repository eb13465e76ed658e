"""What each of the page's buttons does, around one loaded :class:`Inpainter`, and the results it saves.

:class:`Page` knows nothing of Gradio, so its handlers can be called alone: opening a file or an example gives the
pixels and a status line; the Inpaint button (:meth:`Page.run`) yields the page's outputs by name as they change.
Every request's downloads go into a fresh folder of the server's temporary folder (the last :data:`KEEP_RESULTS`
are kept).
"""

from __future__ import annotations

import html
import json
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from maskgit_cli.data.images import save_image
from maskgit_cli.data.inputs import known_pixels
from maskgit_cli.decoding.decode import check_total_iter
from maskgit_cli.decoding.inpaint import InpaintSettings
from maskgit_cli.decoding.pipeline import window_scales, windows_for
from maskgit_cli.decoding.replay import cap_message, cap_steps, counts_chart
from maskgit_cli.errors import MaskgitError
from maskgit_cli.model_card import card_summary
from maskgit_cli.web.inputs import (
    EXAMPLES,
    MAX_PIXELS,
    PageSettings,
    editor_image,
    example_names,
    mask_seed_from,
    masked_preview,
    page_mask,
    read_upload,
)
from maskgit_cli.web.streaming import Replay, Step, run_steps

KEEP_RESULTS = 32  # result folders kept in the temporary folder (older ones are removed)
# The page's outputs that the Inpaint button updates, in the order the layout lists them (the replay's last: the
# step slider's length, the chart of still-masked counts, the frames the slider shows).
OUTPUTS = ("shown", "step_image", "step_mask", "status", "result", "samples", "files", "replay", "chart", "frames")
ANIMATION = "steps.gif"  # the request's animation of the steps, among its downloads


class Page:
    """The page's handlers around one loaded :class:`Inpainter` (separate from Gradio so they can be called alone)."""

    def __init__(self, pipe, workdir: Path, max_pixels: int = MAX_PIXELS, sources: dict | None = None):
        self.pipe = pipe
        self.workdir = Path(workdir)
        self.max_pixels = max_pixels
        self.sources = sources or {}
        self._count = 0
        self._lock = threading.Lock()
        self.tokens = pipe.ready.transformer.config.num_image_tokens

    # -- opening an image

    def open_file(self, path) -> tuple[np.ndarray, str]:
        """The "Open an image file" button: the file's pixels and the status line."""
        if not path:
            raise MaskgitError("no file was uploaded")
        pixels = read_upload(path, self.max_pixels)
        h, w = pixels.shape[:2]
        return pixels, f"Opened {html.escape(Path(path).name)}: {w}x{h}. Paint the hole, then Inpaint."

    def example(self, name: str) -> tuple[np.ndarray, str] | None:
        """The emoji64 test image picker: the image's pixels and the status line (None once the picker is cleared)."""
        if not name:
            return None
        if name not in example_names():
            raise MaskgitError(f"no emoji64 test image {name!r}")
        pixels = read_upload(EXAMPLES / name, self.max_pixels)
        return pixels, f"Opened emoji64 test image {html.escape(name)}. Paint the hole, then Inpaint."

    # -- the Inpaint button

    def run(self, editor, source, mask_seed, schedule, total_iter, sweet_spot, sampler, guidance, seed, num_samples,
            fit, temperature, blend) -> Iterator[dict]:  # fmt: skip
        """The Inpaint button, from the controls' values: yields updates of the page's outputs (:data:`OUTPUTS`) by
        name: the input as the model sees it, every step as it happens, then the results and their downloads."""
        settings = PageSettings.from_page(
            schedule, total_iter, sweet_spot, sampler, guidance, seed, num_samples, fit, temperature, blend
        )
        used = self.check(settings)
        pixels, mask = self.inputs(editor, source, mask_seed)
        h, w = mask.shape
        replay, steps, capped = self.replay_for(pixels, mask, settings, used)
        cleared = dict.fromkeys(OUTPUTS)  # the previous request's outputs
        started = f"Inpainting {w}x{h}..." + (f" {capped}." if capped else "")
        yield cleared | {"shown": Image.fromarray(masked_preview(pixels, mask)), "status": started}
        for event in self.inpaint(pixels, mask, settings, used):
            if isinstance(event, Step):
                status = _step_status(event, steps, settings.num_samples)
                yield {"step_image": replay.add(event), "step_mask": event.mask, "status": status}
            else:
                images, files, report = event
                files.append(str(replay.animation(masked_preview(pixels, mask), np.asarray(images[0]),
                                                  Path(files[0]).parent / ANIMATION)))  # fmt: skip
                done = _done(images, files, report, w, h)
                yield done | _replayed(replay, report, done["status"], capped)

    def replay_for(self, pixels: np.ndarray, mask: np.ndarray, settings: PageSettings, used: InpaintSettings):
        """A request's :class:`Replay` (its token masks before step 1, per window), the steps its decode runs (T
        capped at the most masked tokens of a window, as the pipeline caps it) and the line saying so (None when T
        is not capped): the page says it before decoding, where the pipeline warns."""
        start = self.pipe.token_masks([pixels], [~known_pixels(mask)], settings.fit, **settings.decoding)[0]
        decode = cap_steps(used.decode, max((int(m.sum()) for m in start), default=0))
        capped = None if decode is used.decode else cap_message(used.decode.total_iter, [decode.total_iter])
        return Replay(start, self.pipe.size), decode.steps, capped

    def preview(self, editor, source: str, mask_seed) -> Image.Image | None:
        """The Input picture as soon as a generated mask or its seed is picked: the image with that mask's holes
        gray (None with the brush, or before an image is opened)."""
        if source == "brush" or not editor or editor.get("background") is None:
            return None
        pixels, mask = self.inputs(editor, source, mask_seed)
        return Image.fromarray(masked_preview(pixels, mask))

    def inputs(self, editor, source: str, mask_seed) -> tuple[np.ndarray, np.ndarray]:
        """The image and its lab mask from the page's editor and mask controls."""
        pixels, drawn = editor_image(editor, self.max_pixels)
        return pixels, page_mask(str(source), drawn, mask_seed_from(mask_seed))

    def check(self, settings: PageSettings) -> InpaintSettings:
        """The library's settings of a request, refused before decoding when bad (the library's one-line errors)."""
        used = settings.resolve(self.pipe.defaults)
        check_total_iter(used.decode.total_iter, self.tokens)
        return used

    def inpaint(self, pixels: np.ndarray, mask: np.ndarray, settings: PageSettings, used: InpaintSettings) -> Iterator:
        """:func:`run_steps` with the page's settings (``used``: their :meth:`check`), then the folder of downloads:
        yields Steps, then ``(results, files, report)``."""
        start = time.perf_counter()
        counts: list[int] = []
        results = None
        for event in run_steps(self.pipe, pixels, mask, **settings.call()):
            if isinstance(event, Step):
                if event.sample == 0:
                    counts.append(event.still_masked)
                yield event
            else:
                results = event
        seconds = time.perf_counter() - start
        report = {**_report(results, mask, settings, used, counts, seconds), **self.windows(mask, settings.fit)}
        files, report = self._save(pixels, mask, results, report)
        yield results, files, report

    def windows(self, mask: np.ndarray, fit: str) -> dict:
        """Where an image of another size than the model's was inpainted, as report.json says it: the windows
        (x0, y0, width, height), each inpainted at the model's size, and their scales ({} for a model-size image)."""
        size = self.pipe.size
        if mask.shape == (size, size):
            return {}
        found = windows_for(mask.shape, mask < 128, size, fit, self.pipe.grid)
        windows = [(x0, y0, w, h) for y0, x0, h, w, _ in found]
        return {"windows": [list(w) for w in windows], "scales": window_scales(windows, size), "model_size": size}

    def _save(self, pixels, mask, results, report: dict) -> tuple[list[str], dict]:
        """Write a request's downloads into a fresh folder: result PNG(s), input.png, mask.png and report.json (with
        the weights files in use)."""
        with self._lock:
            self._count += 1
            folder = self.workdir / "results" / f"{self._count:05d}"
        folder.mkdir(parents=True)
        _prune(folder.parent, KEEP_RESULTS)
        for name, img in zip(report["results"], results):
            img.save(folder / name, format="PNG")
        save_image(pixels, folder / "input.png")
        save_image(mask, folder / "mask.png")
        sources = {k: str(v) for k, v in self.sources.items()}
        model = card_summary(self.pipe.card)
        report = {**report, **sources, "vqgan_sha256": self.pipe.ready.vqgan_sha256, "model": model}
        (folder / "report.json").write_text(json.dumps(report, indent=1))
        return [str(folder / n) for n in (*report["results"], "report.json", "input.png", "mask.png")], report


def _report(results: list, mask: np.ndarray, settings: PageSettings, used: InpaintSettings, counts, seconds) -> dict:
    """What report.json says of a request: its files, the hole, the settings used, the tokens still masked after
    every step (of the first sample) and the time."""
    names = ["result.png"] if len(results) == 1 else [f"result_{k}.png" for k in range(len(results))]
    h, w = mask.shape
    holes = int((mask < 128).sum())
    return {
        "results": names,
        "input": {"file": "input.png", "width": w, "height": h},
        "mask": {"file": "mask.png", "hole_pixels": holes, "hole_fraction": holes / mask.size},
        "num_samples": settings.num_samples,
        "fit": settings.fit,
        "settings": asdict(used),
        "still_masked": counts,
        "seconds": round(seconds, 3),
    }


def _step_status(step: Step, steps: int, num_samples: int) -> str:
    of = f" of sample {step.sample + 1}/{num_samples}" if num_samples > 1 else ""
    return f"Step {step.step}/{steps}{of}..."


def _done(images: list, files: list[str], report: dict, w: int, h: int) -> dict:
    """The outputs once a request is done: the result, the samples (when several), the downloads, the summary."""
    status = (
        f"Done in {report['seconds']:.1f} s: {w}x{h}, {report['mask']['hole_pixels']:,} hole pixels, "
        f"{len(images)} result(s)."
    )
    return {"result": images[0], "samples": images if len(images) > 1 else None, "files": files, "status": status}


def _replayed(replay: Replay, report: dict, status: str, capped: str | None) -> dict:
    """The replay's outputs once a request is done: the order map in place of the last (all-white) token mask,
    the step slider's length, the frames it shows, the chart of still-masked counts, and :func:`_done`'s
    ``status`` followed by the tokens filled in how many steps (and the cap, when T was capped)."""
    frames = replay.frames()
    counts = report["still_masked"]
    total = int(sum(m.sum() for m in replay.start))
    filled = f" {total:,} tokens filled in {len(counts)} steps (sample 1; the slider replays them)."
    done = status + filled + (f" {capped}." if capped else "")
    chart = Image.fromarray(counts_chart(counts, start=total))
    return {"step_mask": frames["order"], "replay": len(frames["steps"]), "frames": frames, "chart": chart,
            "status": done}  # fmt: skip


def replay_frame(frames: dict | None, k) -> tuple:
    """The step slider at ``k`` (1-based): step k's marked picture and its token mask; at the last step the order
    map in place of the token mask. (None, None) before any decode."""
    if not frames or not frames["steps"]:
        return None, None
    k = min(max(int(k), 1), len(frames["steps"]))
    last = k == len(frames["steps"])
    return frames["steps"][k - 1], frames["order"] if last else frames["masks"][k - 1]


def _prune(folder: Path, keep: int) -> None:
    old = sorted(p for p in folder.iterdir() if p.is_dir())[:-keep]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


def page_message(e: BaseException, log: Callable[[str], None]) -> str:
    """A message for the page: the one line of an expected error (also logged), else the error's kind (its trace
    goes to the server's stderr)."""
    if isinstance(e, (MaskgitError, OSError)):
        text = str(e)
        log(f"page: {text}")
    else:
        traceback.print_exception(e, file=sys.stderr)
        text = f"internal error ({type(e).__name__}: {e}); the server keeps running, see its log"
    return html.escape(text, quote=False)
