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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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
    Opened,
    PageSettings,
    editor_image,
    example_names,
    mask_seed_from,
    masked_preview,
    page_mask,
    read_upload,
    shown_copy,
)
from maskgit_cli.web.streaming import Replay, Step, run_steps

KEEP_RESULTS = 32  # result folders kept in the temporary folder (older ones are removed)
# zlib level of the result and input PNGs: a 2560x3000 photo is written in 2.5 s at level 1 against 8.5 s at Pillow's
# default 6 (AMD EPYC, shared), for a file 15% larger (13.6 against 11.8 MB); the pixels are the same.
FAST_PNG = 1
STOP_WAIT = 5  # seconds Stop waits for the decode to end before saying so (it ends at its next step)
# The page's outputs that the Inpaint button updates, in the order the layout lists them (the replay's last: the
# step slider's length, the chart of still-masked counts, the frames the slider shows).
OUTPUTS = (
    "shown", "step_image", "step_mask", "status", "result", "samples", "files", "compare", "replay", "chart", "frames"
)  # fmt: skip
ANIMATION = "steps.gif"  # the request's animation of the steps, among its downloads
WINDOW_COLOR = (0, 200, 255)  # the outline of the windows the model inpaints, on the Input


@dataclass
class Job:
    """What the Inpaint button read (:meth:`Page.read`), kept on the server for the decode (:meth:`Page.run`): the
    image, its lab mask, and the name its results carry (None: ``result.png``)."""

    pixels: np.ndarray
    mask: np.ndarray
    stem: str | None


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
        self._decoding = threading.Event()  # set while a decode runs (one at a time: the queue's limit)
        self._last_step = ""  # the status of the last step streamed

    # -- opening an image

    def open_file(self, path) -> tuple[Opened, str]:
        """The one way in for an image, whatever its source (the Open button, a file dropped or pasted on the
        editor, an example, "Continue from result"): the file read and checked, and the status line."""
        if not path:
            raise MaskgitError("no file was uploaded")
        opened = Opened.of(Path(path).name, read_upload(path, self.max_pixels))
        h, w = opened.pixels.shape[:2]
        status = f"Opened {html.escape(opened.name)}: {w}x{h}. Paint the hole, then Inpaint."
        size = self.pipe.size
        if (h, w) != (size, size):
            status += (
                f" The model inpaints {size}x{size} images: this one is inpainted in {size}x{size} windows, scaled "
                "(outlined on the Input once you press Inpaint)."
            )
        return opened, status

    def example(self, index) -> tuple[Opened, str]:
        """The emoji64 test image picker (the image's index in :func:`example_names`), opened as a file is."""
        names = example_names()
        if not isinstance(index, int) or not 0 <= index < len(names):
            raise MaskgitError(f"no emoji64 test image number {index!r}")
        return self.open_file(EXAMPLES / names[index])

    # -- the Inpaint button

    def read(self, editor, opened, source, mask_seed) -> tuple[Job, str]:
        """The Inpaint button's first half: the image and its mask from the editor and the mask controls (``opened``:
        the session's :class:`Opened` image, None when the editor's value is all there is), and the status line."""
        pixels, mask = self.inputs(editor, source, mask_seed, opened)
        h, w = mask.shape
        job = Job(pixels, mask, opened.stem if opened is not None else None)
        return job, f"Read {w}x{h} and its mask; waiting for the model..."

    def run(self, job, schedule, total_iter, sweet_spot, sampler, guidance, seed, num_samples, fit, temperature,
            blend) -> Iterator[dict]:  # fmt: skip
        """The Inpaint button's second half, on what :meth:`read` read: yields updates of the page's outputs
        (:data:`OUTPUTS`) by name: the input as the model sees it (its windows outlined), every step as it happens,
        then the results and their downloads. The status names the stage: the windows, every step, done."""
        if job is None:
            raise MaskgitError("nothing to inpaint: open an image, paint the hole and press Inpaint")
        settings = PageSettings.from_page(
            schedule, total_iter, sweet_spot, sampler, guidance, seed, num_samples, fit, temperature, blend
        )
        used = self.check(settings)
        self._last_step = ""
        pixels, mask = job.pixels, job.mask
        h, w = mask.shape
        windows = self.windows(mask, settings.fit)
        replay, steps, capped = self.replay_for(pixels, mask, settings, used)
        cleared = dict.fromkeys(OUTPUTS)  # the previous request's outputs
        shown = Image.fromarray(outlined(masked_preview(pixels, mask), windows.get("windows", [])))
        started = f"Inpainting {w}x{h}{windows_line(windows)}..." + (f" {capped}." if capped else "")
        yield cleared | {"shown": shown, "status": started}
        self._decoding.set()
        try:
            for event in self.inpaint(pixels, mask, settings, used, job.stem):
                if isinstance(event, Step):
                    status = _step_status(event, steps, settings.num_samples)
                    self._last_step = status.rstrip(".")
                    yield {"step_image": replay.add(event), "step_mask": event.mask, "status": status}
                else:
                    images, files, report = event
                    files.append(str(replay.animation(masked_preview(pixels, mask), np.asarray(images[0]),
                                                      Path(files[0]).parent / ANIMATION)))  # fmt: skip
                    done = _done(images, files, report, w, h)
                    yield done | _replayed(replay, report, done["status"], capped)
        finally:  # also when Stop closed this generator: the decode thread has ended by now (run_steps)
            self._decoding.clear()

    def replay_for(self, pixels: np.ndarray, mask: np.ndarray, settings: PageSettings, used: InpaintSettings):
        """A request's :class:`Replay` (its token masks before step 1, per window), the steps its decode runs (T
        capped at the most masked tokens of a window, as the pipeline caps it) and the line saying so (None when T
        is not capped): the page says it before decoding, where the pipeline warns."""
        start = self.pipe.token_masks([pixels], [~known_pixels(mask)], settings.fit, **settings.decoding)[0]
        decode = cap_steps(used.decode, max((int(m.sum()) for m in start), default=0))
        capped = None if decode is used.decode else cap_message(used.decode.total_iter, [decode.total_iter])
        return Replay(start, self.pipe.size), decode.steps, capped

    def preview(self, opened: Opened | None, source: str, mask_seed) -> Image.Image | None:
        """The Input picture as soon as a generated mask or its seed is picked: the opened image with that mask's
        holes gray (None with the brush, or before an image is opened)."""
        if source == "brush" or opened is None:
            return None
        blank = np.zeros(opened.pixels.shape[:2], dtype=bool)  # a generated mask ignores the drawing
        return Image.fromarray(masked_preview(opened.pixels, page_mask(str(source), blank, mask_seed_from(mask_seed))))

    def stop(self) -> str:
        """The Stop button, once Gradio has closed the running decode (``cancels=``): the status, when the decode
        has ended (waiting at most :data:`STOP_WAIT` seconds), naming the last step it reached."""
        deadline = time.monotonic() + STOP_WAIT
        while self._decoding.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._decoding.is_set():
            return "Stopping..."
        step = f" after {self._last_step}" if self._last_step else ""
        return f"Stopped{step}. Press Inpaint to start again."

    def inputs(self, editor, source: str, mask_seed, opened: Opened | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The image and its lab mask from the page's editor and mask controls (``opened``: :func:`editor_image`)."""
        pixels, drawn = editor_image(editor, self.max_pixels, opened)
        return pixels, page_mask(str(source), drawn, mask_seed_from(mask_seed))

    def check(self, settings: PageSettings) -> InpaintSettings:
        """The library's settings of a request, refused before decoding when bad (the library's one-line errors)."""
        used = settings.resolve(self.pipe.defaults)
        check_total_iter(used.decode.total_iter, self.tokens)
        return used

    def inpaint(self, pixels: np.ndarray, mask: np.ndarray, settings: PageSettings, used: InpaintSettings,
                stem: str | None = None) -> Iterator:  # fmt: skip
        """:func:`run_steps` with the page's settings (``used``: their :meth:`check`), then the folder of downloads:
        yields Steps, then ``(results, files, report)``. ``stem``: the opened file's name, which the results carry
        (``NAME-inpainted.png``)."""
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
        report = {**_report(results, mask, settings, used, counts, seconds, stem), **self.windows(mask, settings.fit)}
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
            img.save(folder / name, format="PNG", compress_level=FAST_PNG)
        Image.fromarray(pixels).save(folder / "input.png", compress_level=FAST_PNG)
        save_image(mask, folder / "mask.png")
        sources = {k: str(v) for k, v in self.sources.items()}
        model = card_summary(self.pipe.card)
        report = {**report, **sources, "vqgan_sha256": self.pipe.ready.vqgan_sha256, "model": model}
        (folder / "report.json").write_text(json.dumps(report, indent=1))
        return [str(folder / n) for n in (*report["results"], "report.json", "input.png", "mask.png")], report


def result_names(count: int, stem: str | None = None) -> list[str]:
    """The result files' names: ``STEM-inpainted.png`` (``STEM-inpainted-K.png`` for several samples) after the
    opened file, ``result.png`` (``result_K.png``) for an image that came without a name (the API)."""
    if stem is None:
        return ["result.png"] if count == 1 else [f"result_{k}.png" for k in range(count)]
    return [f"{stem}-inpainted.png"] if count == 1 else [f"{stem}-inpainted-{k}.png" for k in range(count)]


def outlined(picture: np.ndarray, windows: list) -> np.ndarray:
    """The browser's copy of ``picture`` (:func:`shown_copy`) with each window ``(x0, y0, width, height)`` of the
    full-size image outlined: where the model looked, at its own size."""
    shown = shown_copy(picture)
    if not windows:
        return shown
    scale = shown.shape[1] / picture.shape[1]
    image = Image.fromarray(shown)
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(shown.shape[:2]) / 150))
    for x0, y0, w, h in windows:
        box = [x0 * scale, y0 * scale, (x0 + w) * scale - 1, (y0 + h) * scale - 1]
        draw.rectangle(box, outline=WINDOW_COLOR, width=line)
    return np.asarray(image)


def windows_line(windows: dict) -> str:
    """The windows of :meth:`Page.windows` in words, for the status: how many, and how much each was scaled."""
    if not windows:
        return ""
    size = windows["model_size"]
    scales = ", ".join(f"{max(sx, sy):.3g}x" for sx, sy in windows["scales"])
    count = len(windows["windows"])
    return f" in {count} window{'s' if count > 1 else ''} of the model's {size}x{size} (outlined; scaled {scales})"


def _report(results: list, mask: np.ndarray, settings: PageSettings, used: InpaintSettings, counts, seconds,
            stem: str | None = None) -> dict:  # fmt: skip
    """What report.json says of a request: its files, the hole, the settings used, the tokens still masked after
    every step (of the first sample) and the time."""
    names = result_names(len(results), stem)
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
    shown = files[: len(images)]  # the saved files: the downloads carry their names, and nothing is encoded twice
    before = next(f for f in files if Path(f).name == "input.png")
    return {"result": shown[0], "samples": shown if len(images) > 1 else None, "files": files, "status": status,
            "compare": (before, shown[0])}  # fmt: skip


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
