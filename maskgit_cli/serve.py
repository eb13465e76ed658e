"""`maskgit serve`: inpainting in the browser, a local Gradio page over the one decoding object, :class:`Inpainter`.

The page: open an image of any size (or pick an emoji64 test image), draw the hole with a brush or pick a generated
mask kind (stroke, box, half, outpaint), choose the decoding settings, press Inpaint and watch every step as it
happens (the decoded image and the token mask: white = known, black = still masked), then the result and its
samples; download the result PNGs, the mask and ``report.json``.

One decoding path: the page calls :class:`~maskgit_cli.decoding.pipeline.Inpainter`, the object behind `maskgit
inpaint`, loaded once at start-up; the same image, mask, settings and seed give the same pixels as the command line.
Steps stream through one function, :func:`run_steps` (the decode runs in a thread and reports every step through
``on_step``). Requests are queued (one decode at a time, any number of tabs). Bad input (an unreadable file, an
image over :data:`MAX_PIXELS`, an empty mask, a bad setting) is a message on the page, never a stack trace, and the
server keeps serving. Uploads and results live in a temporary folder removed when the server stops.

Gradio is imported lazily (the optional extra ``maskgit-cli[web]``): the rest of the package does not need it.
"""

from __future__ import annotations

import errno
import html
import json
import os
import queue
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maskgit_cli.choices import BLENDS, FITS, MASK_KINDS, SAMPLERS, SCHEDULES
from maskgit_cli.data.images import read_image, to_rgb
from maskgit_cli.data.mask_generator import generate_mask_for, mask_rng
from maskgit_cli.data.masks import GRAY, HOLE, KNOWN
from maskgit_cli.decoding.pipeline import side_by_side
from maskgit_cli.errors import MaskgitError

# The largest image the page takes (width x height): 4096 x 4096. Larger ones are refused before decoding.
MAX_PIXELS = 4096 * 4096
# Where the mask comes from: drawn with the brush, or generated (maskgit_cli.data.mask_generator).
MASK_SOURCES = ("brush", *MASK_KINDS)
# The emoji64 test images of a checkout (absent from an installed package: the picker is then hidden).
EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "emoji64" / "test"
MAX_SAMPLES = 8
MAX_UPLOAD = "200mb"  # the largest file the page accepts
KEEP_RESULTS = 32  # result folders kept in the temporary folder (older ones are removed)
BRUSH_COLOR = "#ff00ff"

# Small images shown large and sharp (64x64 emoji are the model's size); a frame shows an all-white token mask.
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#step-mask img { background: #999; padding: 4px; box-sizing: border-box; }
"""


# ---------------------------------------------------------------------------------------------------------
# Inputs: images, masks, settings


def read_upload(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An uploaded image file as uint8 (H,W,3) (transparency flattened on white, as everywhere in the package):
    one-line MaskgitErrors for an unreadable file and for one over ``max_pixels`` (refused from its header)."""
    name = Path(path).name
    try:
        size = read_image(path, header=True).size
    except MaskgitError as e:
        raise MaskgitError(str(e).replace(str(path), name)) from None
    check_pixels(size[0], size[1], max_pixels)
    try:
        img = read_image(path)
    except MaskgitError as e:
        raise MaskgitError(str(e).replace(str(path), name)) from None
    return np.array(to_rgb(img), dtype=np.uint8)


def check_pixels(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise MaskgitError(
            f"the image is {width}x{height} = {width * height:,} pixels, more than the page's limit of "
            f"{max_pixels:,}: use a smaller image (or `maskgit inpaint` for large ones)"
        )


def editor_image(value, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """The image editor's value -> (pixels uint8 (H,W,3), drawn bool (H,W): True where the brush painted).

    ``value``: Gradio's ImageEditor dict (``background``, ``layers``, ``composite``) of uint8 arrays (RGBA, or
    RGB/L). The background's transparency is flattened on white; a pixel is drawn where any layer is not
    transparent."""
    from PIL import Image

    background = value.get("background") if isinstance(value, dict) else None
    if background is None:
        raise MaskgitError("no image: open an image file, drop one on the editor, or pick an emoji64 test image")
    background = np.asarray(background)
    h, w = background.shape[:2]
    check_pixels(w, h, max_pixels)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[background.shape[2] if background.ndim == 3 else 2]
    pixels = np.array(to_rgb(Image.fromarray(background.astype(np.uint8), mode)), dtype=np.uint8)
    drawn = np.zeros((h, w), dtype=bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        layer = np.asarray(layer)
        if layer.shape[:2] != (h, w):
            raise MaskgitError(
                f"the drawing is {layer.shape[1]}x{layer.shape[0]} but the image is {w}x{h}: draw on the image again"
            )
        if layer.ndim == 3 and layer.shape[2] == 4:
            drawn |= layer[..., 3] > 0
        else:  # a layer without alpha: whatever is not black was painted
            drawn |= (layer.reshape(h, w, -1) > 0).any(axis=2)
    return pixels, drawn


def generated_mask(kind: str, seed: int, height: int, width: int) -> np.ndarray:
    """Mask ``kind`` of ``mask_rng(seed, 0)`` for an image of (height, width), as `maskgit inpaint --mask-kind KIND
    --mask-seed SEED` makes it for the first image of a folder. Lab format: 0 = hole, 255 = known."""
    return generate_mask_for(kind, mask_rng(seed, 0), height, width)


def page_mask(source: str, drawn: np.ndarray, mask_seed: int = 0) -> np.ndarray:
    """The lab mask (0 = hole, 255 = known) for the image: the brush's drawing, or a generated mask kind."""
    if source not in MASK_SOURCES:
        raise MaskgitError(f"mask {source!r}: expected one of {', '.join(MASK_SOURCES)}")
    h, w = drawn.shape
    if source == "brush":
        if not drawn.any():
            raise MaskgitError(
                "the mask is empty: paint over what to inpaint with the brush, or pick a generated mask "
                f"({', '.join(MASK_KINDS)})"
            )
        return np.where(drawn, HOLE, KNOWN).astype(np.uint8)
    return generated_mask(source, mask_seed, h, w)


@dataclass
class PageSettings:
    """What the page's controls set: the decoding settings of one request, and how many results it asks for."""

    schedule: str = "cosine"
    total_iter: int = 8
    sweet_spot: int | None = None  # None (0 on the page) = all T steps
    sampler: str = "confidence"
    pixel_guidance: float = 50.0
    seed: int = 0
    num_samples: int = 1
    fit: str = "auto"
    temperature: float | None = None  # None: the pipeline's (`maskgit serve --temperature`)
    blend: str | None = None  # None: the pipeline's (`maskgit serve --blend`; `--lab`: none)

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
    ):
        """From the controls' raw values (numbers may come as floats or None): one-line errors naming them."""
        s = cls(
            schedule=str(schedule),
            total_iter=_integer(total_iter, "T (total iterations)"),
            sweet_spot=_integer(sweet_spot, "sweet spot", 0) or None,
            sampler=str(sampler),
            pixel_guidance=_number(pixel_guidance, "guidance", 0.0),
            seed=_integer(seed, "seed", 0),
            num_samples=_integer(num_samples, "samples", 1),
            fit=str(fit),
            temperature=None if temperature in (None, "") else _number(temperature, "temperature"),
            blend=None if blend in (None, "") else str(blend),
        )
        if not 1 <= s.num_samples <= MAX_SAMPLES:
            raise MaskgitError(f"samples {s.num_samples}: between 1 and {MAX_SAMPLES}")
        if s.fit not in FITS:
            raise MaskgitError(f"fit {s.fit!r}: expected one of {', '.join(FITS)}")
        if s.temperature is not None and not s.temperature > 0:
            raise MaskgitError(f"temperature {s.temperature:g}: must be > 0 (1 = the official draws, lower = sharper)")
        if s.blend is not None and s.blend not in BLENDS:
            raise MaskgitError(f"blend {s.blend!r}: expected one of {', '.join(BLENDS)}")
        return s

    def decoding(self) -> dict:
        """The settings :class:`Inpainter` takes (schedule=, total_iter=, ...); temperature and blend only when set."""
        names = ("schedule", "total_iter", "sweet_spot", "sampler", "pixel_guidance", "seed")
        optional = {k: getattr(self, k) for k in ("temperature", "blend") if getattr(self, k) is not None}
        return {**{k: getattr(self, k) for k in names}, **optional}


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


# ---------------------------------------------------------------------------------------------------------
# Decoding, step by step


@dataclass
class Step:
    """One decoding step as it happens: the decoded prediction and the token mask (white = known, black = still
    masked) at the model's resolution, side by side when the image is inpainted in several windows."""

    sample: int  # 0-based
    step: int  # 1-based
    image: object  # PIL image
    mask: object  # PIL image


class _Cancelled(Exception):
    """Raised inside the decode thread once the page stopped listening (the tab was closed)."""


def run_steps(pipe, image, mask, num_samples: int = 1, fit: str = "auto", **settings) -> Iterator:
    """Inpaint with ``pipe`` (an :class:`Inpainter`), yielding a :class:`Step` after every decoding step of every
    sample as it happens, then the list of results (PIL images, ``num_samples`` of them).

    The decode runs in a thread and reports through the Inpainter's ``on_step``; the results are the pixels
    ``pipe(image, mask, num_samples=..., fit=..., **settings)`` returns. Closing the generator early stops the decode
    at its next step."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    sample = [-1]

    def on_step(t: int, images: list, masks: list) -> None:
        if stop.is_set():
            raise _Cancelled
        if t == 1:
            sample[0] += 1
        events.put(Step(sample[0], t, _side_by_side(images), _side_by_side(masks)))

    def work() -> None:
        try:
            events.put(("done", pipe(image, mask, num_samples=num_samples, fit=fit, on_step=on_step, **settings)))
        except BaseException as e:  # noqa: BLE001 - handed to the generator, which raises it
            events.put(("error", e))

    worker = threading.Thread(target=work, name="maskgit-serve-decode", daemon=True)
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
            results = payload if isinstance(payload, list) else [payload]
            yield results
            return
    finally:
        stop.set()
        worker.join()


def _side_by_side(tiles: list):
    """One window's picture, or several windows' side by side (gray separators), as the pipeline shows steps."""
    from PIL import Image

    return tiles[0] if len(tiles) == 1 else Image.fromarray(side_by_side([np.asarray(t) for t in tiles]))


def _still_masked(mask_image, tile: int) -> int:
    """Tokens still masked in a token-mask picture (black = masked; ``tile`` pixels per token side)."""
    return int((np.asarray(mask_image.convert("L")) == 0).sum()) // (tile * tile)


# ---------------------------------------------------------------------------------------------------------
# The page


class Page:
    """The page's handlers around one loaded :class:`Inpainter` (separate from Gradio so they can be called alone)."""

    def __init__(self, pipe, workdir: Path, max_pixels: int = MAX_PIXELS, sources: dict | None = None):
        self.pipe = pipe
        self.workdir = Path(workdir)
        self.max_pixels = max_pixels
        self.sources = sources or {}
        self._count = 0
        self._lock = threading.Lock()
        cfg = pipe.ready.vqgan.config
        self.tile = cfg.img_resolution // cfg.latent_resolution
        self.tokens = pipe.ready.transformer.config.num_image_tokens

    def defaults(self) -> PageSettings:
        """The controls' initial values: the pipeline's settings (``maskgit serve``'s options, --lab included)."""
        s = self.pipe.settings
        return PageSettings(
            schedule=s.decode.schedule,
            total_iter=s.decode.total_iter,
            sweet_spot=s.decode.sweet_spot,
            sampler=s.decode.sampler,
            pixel_guidance=s.pixel_guidance,
            seed=s.decode.seed,
            temperature=s.decode.temperature,
            blend=s.blend,
        )

    def open_file(self, path) -> np.ndarray:
        if not path:
            raise MaskgitError("no file was uploaded")
        return read_upload(path, self.max_pixels)

    def example(self, name: str) -> np.ndarray:
        names = example_names()
        if name not in names:
            raise MaskgitError(f"no emoji64 test image {name!r}")
        return read_upload(EXAMPLES / name, self.max_pixels)

    def inputs(self, editor, source: str, mask_seed) -> tuple[np.ndarray, np.ndarray]:
        """The image and its lab mask from the page's editor and mask controls."""
        pixels, drawn = editor_image(editor, self.max_pixels)
        return pixels, page_mask(str(source), drawn, _integer(mask_seed, "mask seed", 0))

    def check(self, settings: PageSettings) -> None:
        """Refuse bad settings before decoding (the library's one-line errors)."""
        from maskgit_cli.decoding.decode import check_total_iter
        from maskgit_cli.decoding.inpaint import InpaintSettings

        InpaintSettings.from_options(**{**self.pipe.defaults, **settings.decoding()})
        check_total_iter(settings.total_iter, self.tokens)

    def inpaint(self, pixels: np.ndarray, mask: np.ndarray, settings: PageSettings) -> Iterator:
        """:func:`run_steps` with the page's settings, then the folder of downloads: yields Steps, then
        ``(results, files, report)``."""
        start = time.perf_counter()
        counts: list[int] = []
        results = None
        for event in run_steps(self.pipe, pixels, mask, settings.num_samples, settings.fit, **settings.decoding()):
            if isinstance(event, Step):
                if event.sample == 0:
                    counts.append(_still_masked(event.mask, self.tile))
                yield event
            else:
                results = event
        seconds = time.perf_counter() - start
        files, report = self._save(pixels, mask, results, settings, counts, seconds)
        yield results, files, report

    def _save(self, pixels, mask, results, settings: PageSettings, counts, seconds) -> tuple[list[str], dict]:
        """Write the request's downloads into a fresh folder: result PNG(s), input.png, mask.png, report.json."""
        from maskgit_cli.data.images import save_image
        from maskgit_cli.decoding.inpaint import InpaintSettings

        with self._lock:
            self._count += 1
            folder = self.workdir / "results" / f"{self._count:05d}"
        folder.mkdir(parents=True)
        _prune(folder.parent, KEEP_RESULTS)
        names = ["result.png"] if len(results) == 1 else [f"result_{k}.png" for k in range(len(results))]
        for name, img in zip(names, results):
            img.save(folder / name, format="PNG")
        save_image(pixels, folder / "input.png")
        save_image(mask, folder / "mask.png")
        used = InpaintSettings.from_options(**{**self.pipe.defaults, **settings.decoding()})
        h, w = mask.shape
        holes = int((mask < 128).sum())
        report = {
            "results": names,
            "input": {"file": "input.png", "width": w, "height": h},
            "mask": {"file": "mask.png", "hole_pixels": holes, "hole_fraction": holes / mask.size},
            "num_samples": settings.num_samples,
            "fit": settings.fit,
            "settings": asdict(used),
            "still_masked": counts,
            "seconds": round(seconds, 3),
            **{k: str(v) for k, v in self.sources.items()},
            "vqgan_sha256": self.pipe.ready.vqgan_sha256,
        }
        (folder / "report.json").write_text(json.dumps(report, indent=1))
        files = [str(folder / n) for n in (*names, "report.json", "input.png", "mask.png")]
        return files, report


def example_names() -> list[str]:
    """The emoji64 test images of this checkout (sorted), or [] for an installed package."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES.iterdir() if p.suffix.lower() == ".png")


def masked_preview(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The input as the model sees it: holes gray."""
    out = pixels.copy()
    out[mask < 128] = GRAY
    return out


def _prune(folder: Path, keep: int) -> None:
    import shutil

    old = sorted(p for p in folder.iterdir() if p.is_dir())[:-keep]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


def _message(e: BaseException, log: Callable[[str], None]) -> str:
    """A message for the page: the one line of an expected error (also logged), else the error's kind (its trace
    goes to the server's stderr)."""
    if isinstance(e, (MaskgitError, OSError)):
        text = str(e)
        log(f"page: {text}")
    else:
        traceback.print_exception(e, file=sys.stderr)
        text = f"internal error ({type(e).__name__}: {e}); the server keeps running, see its log"
    return html.escape(text, quote=False)


def build_page(page: Page, title: str = "maskgit serve", log: Callable[[str], None] | None = None):
    """The Gradio Blocks of the page (not launched). ``log`` gets a line for every message shown on the page."""
    import gradio as gr
    from PIL import Image

    log = log or (lambda text: None)

    d = page.defaults()
    examples = example_names()

    def fail(e: BaseException):
        return gr.Error(_message(e, log), duration=None, print_exception=False)

    def editor_value(pixels: np.ndarray):
        radius = max(2, min(pixels.shape[:2]) // 16)
        value = {"background": pixels, "layers": [], "composite": pixels}
        return gr.ImageEditor(value=value, brush=_brush(gr, radius))

    def open_file(path):
        try:
            pixels = page.open_file(path)
        except Exception as e:  # noqa: BLE001 - every error is a message on the page
            raise fail(e) from None
        h, w = pixels.shape[:2]
        return editor_value(pixels), f"Opened {html.escape(Path(path).name)}: {w}x{h}. Paint the hole, then Inpaint."

    def open_example(name):
        if not name:
            return gr.skip(), gr.skip()
        try:
            pixels = page.example(name)
        except Exception as e:  # noqa: BLE001
            raise fail(e) from None
        return editor_value(pixels), f"Opened emoji64 test image {html.escape(name)}. Paint the hole, then Inpaint."

    # Gradio's copies of uploads and results: those over a day old are removed every hour (all of them at exit).
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(
            "# maskgit serve\nOpen an image (or pick an emoji64 test image), paint the hole with the brush or pick "
            "a generated mask, press **Inpaint** and watch the tokens fill in, step by step."
        )
        with gr.Row():
            with gr.Column(scale=1):
                editor = gr.ImageEditor(
                    label="Image: paint the hole",
                    type="numpy",
                    image_mode="RGBA",
                    sources=("upload", "clipboard"),
                    transforms=(),
                    layers=False,
                    brush=_brush(gr, 4),
                    format="png",
                    height=420,
                    elem_id="editor",
                    elem_classes=["pixelated"],
                )
                with gr.Row():
                    upload = gr.UploadButton(
                        "Open an image file", file_types=["image"], type="filepath", elem_id="upload"
                    )
                    example = gr.Dropdown(
                        examples,
                        value=None,
                        label="or an emoji64 test image",
                        visible=bool(examples),
                        elem_id="example",
                    )
                with gr.Row():
                    source = gr.Radio(
                        list(MASK_SOURCES),
                        value="brush",
                        label="Mask",
                        info="brush: what you painted; or a generated mask (as `maskgit inpaint --mask-kind`)",
                    )
                    mask_seed = gr.Number(0, precision=0, minimum=0, label="Mask seed")
                run = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
                with gr.Accordion("Decoding", open=True):
                    with gr.Row():
                        schedule = gr.Dropdown(list(SCHEDULES), value=d.schedule, label="Schedule")
                        sampler = gr.Radio(list(SAMPLERS), value=d.sampler, label="Sampler")
                    with gr.Row():
                        total_iter = gr.Slider(1, page.tokens, value=d.total_iter, step=1, label="T (total iterations)")
                        sweet_spot = gr.Number(
                            d.sweet_spot or 0, precision=0, minimum=0, label="Sweet spot (steps run; 0 = all T)"
                        )
                    with gr.Row():
                        guidance = gr.Number(d.pixel_guidance, minimum=0, label="Guidance (known pixels; 0 = off)")
                        seed = gr.Number(d.seed, precision=0, label="Seed")
                    with gr.Row():
                        temperature = gr.Number(
                            d.temperature, minimum=0, label="Temperature (1 = the official draws; lower = sharper)"
                        )
                        blend = gr.Radio(list(BLENDS), value=d.blend, label="Blend (holes into the known pixels)")
                    with gr.Row():
                        num_samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="num-samples")
                        fit = gr.Radio(list(FITS), value="auto", label="Fit (other sizes than the model's)")
            with gr.Column(scale=1):
                status = gr.Markdown("Open an image to start.", elem_id="status")
                with gr.Row():
                    small = {"type": "pil", "format": "png", "height": 200, "buttons": ["download"]}
                    shown = gr.Image(label="Input", elem_id="shown", elem_classes=["pixelated"], **small)
                    step_image = gr.Image(label="Step", elem_id="step-image", elem_classes=["pixelated"], **small)
                    step_mask = gr.Image(label="Token mask", elem_id="step-mask", elem_classes=["pixelated"], **small)
                gr.Markdown(
                    "Input: the holes gray, as the model sees them. Step: the decoded prediction after each step. "
                    "Token mask: white = known, black = still masked."
                )
                with gr.Row():
                    result = gr.Image(
                        label="Result",
                        type="pil",
                        format="png",
                        height=260,
                        buttons=["download", "fullscreen"],
                        elem_id="result",
                        elem_classes=["pixelated"],
                    )
                    samples = gr.Gallery(
                        label="Samples",
                        format="png",
                        columns=4,
                        height=260,
                        elem_id="samples",
                        elem_classes=["pixelated"],
                    )
                files = gr.File(
                    label="Downloads: result, report.json, input, mask", file_count="multiple", elem_id="downloads"
                )

        def inpaint(editor_value_, source_, mask_seed_, schedule_, total_iter_, sweet_spot_, sampler_, guidance_,
                    seed_, num_samples_, fit_, temperature_, blend_):  # fmt: skip
            try:
                settings = PageSettings.from_page(
                    schedule_,
                    total_iter_,
                    sweet_spot_,
                    sampler_,
                    guidance_,
                    seed_,
                    num_samples_,
                    fit_,
                    temperature_,
                    blend_,
                )
                page.check(settings)
                pixels, mask = page.inputs(editor_value_, source_, mask_seed_)
            except Exception as e:  # noqa: BLE001 - every error is a message on the page
                raise fail(e) from None
            h, w = mask.shape
            yield {
                shown: Image.fromarray(masked_preview(pixels, mask)),
                status: f"Inpainting {w}x{h}...",
                step_image: None,
                step_mask: None,
                result: None,
                samples: None,
                files: None,
            }
            try:
                for event in page.inpaint(pixels, mask, settings):
                    if isinstance(event, Step):
                        of = f" of sample {event.sample + 1}/{settings.num_samples}" if settings.num_samples > 1 else ""
                        steps = settings.sweet_spot or settings.total_iter
                        yield {
                            step_image: event.image,
                            step_mask: event.mask,
                            status: f"Step {event.step}/{steps}{of}...",
                        }
                    else:
                        images, paths, report = event
                        yield {
                            result: images[0],
                            samples: images if len(images) > 1 else None,
                            files: paths,
                            status: f"Done in {report['seconds']:.1f} s: {w}x{h}, {report['mask']['hole_pixels']:,} "
                            f"hole pixels, {len(images)} result(s). Tokens still masked after each step: "
                            + ", ".join(str(c) for c in report["still_masked"]),
                        }
            except Exception as e:  # noqa: BLE001
                raise fail(e) from None

        # opening an image does not wait for a running decode (only the Inpaint button shares the one model)
        opening = {"outputs": [editor, status], "concurrency_limit": 4}
        upload.upload(open_file, inputs=[upload], api_name="open_file", **opening)
        example.input(open_example, inputs=[example], api_name="example", **opening)
        run.click(
            inpaint,
            inputs=[
                editor,
                source,
                mask_seed,
                schedule,
                total_iter,
                sweet_spot,
                sampler,
                guidance,
                seed,
                num_samples,
                fit,
                temperature,
                blend,
            ],
            outputs=[shown, step_image, step_mask, status, result, samples, files],
            api_name="inpaint",
        )
    return demo


def _brush(gr, radius: int):
    return gr.Brush(default_size=int(radius), colors=[BRUSH_COLOR], color_mode="fixed")


# ---------------------------------------------------------------------------------------------------------
# The server


def check_port(host: str, port: int) -> None:
    """A one-line MaskgitError when ``host:port`` cannot be listened on (busy, or not an address of this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise MaskgitError(f"--host {host}: not a known address ({e})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise MaskgitError(
                    f"port {port} on {host} is busy (another server is using it): pass another --port"
                ) from None
            raise MaskgitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise MaskgitError(
            "`maskgit serve` needs Gradio: pip install 'maskgit-cli[web]' (or `make install` in a checkout)"
        ) from None
    return gradio


def serve(
    transformer=None,
    vqgan=None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    max_pixels: int = MAX_PIXELS,
    on_ready: Callable[[str, Path], None] | None = None,
    log: Callable[[str], None] | None = None,
    **options,
) -> None:
    """Serve the page on ``host:port`` until interrupted (Ctrl-C or SIGTERM), then remove the temporary folder.

    ``transformer``, ``vqgan``: weights files (default: the shipped ones), loaded once. ``options``: the
    Inpainter's settings (``lab=``, ``sampling=``, ``pixel_guidance=``, ``any_vqgan=``, ...), the page's defaults.
    ``on_ready(url, folder)`` is called once the page answers; ``log`` gets progress lines."""
    log = log or (lambda text: None)
    check_port(host, port)
    folder = Path(tempfile.mkdtemp(prefix="maskgit-serve-"))
    saved = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")  # uploads and Gradio's copies of the results
    previous = _stop_on_sigterm()
    demo = None
    try:
        gr = _import_gradio()
        from maskgit_cli.decoding.inpaint import with_defaults
        from maskgit_cli.decoding.pipeline import Inpainter

        transformer, vqgan = with_defaults(transformer, vqgan)
        log(f"loading {transformer} and {vqgan}")
        pipe = Inpainter.from_pretrained(transformer, vqgan, device, **options)
        page = Page(pipe, folder, max_pixels, {"transformer": transformer, "vqgan": vqgan})
        demo = build_page(page, log=log)
        demo.queue(default_concurrency_limit=1)  # one decode at a time; other requests wait their turn
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["monospace"])
        try:
            demo.launch(
                server_name=host,
                server_port=port,
                prevent_thread_lock=True,
                quiet=True,
                show_error=False,
                ssr_mode=False,
                inbrowser=False,
                theme=theme,
                css=CSS,
                footer_links=[],
                enable_monitoring=False,
                max_file_size=MAX_UPLOAD,
            )
        except OSError as e:
            raise MaskgitError(
                f"port {port} on {host} is busy or cannot be listened on ({e}): pass another --port"
            ) from None
        url_host = f"[{host}]" if ":" in host else host
        if on_ready:
            on_ready(f"http://{url_host}:{port}", folder)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        log("stopping")
    finally:
        if demo is not None:
            demo.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _stop_on_sigterm():
    """SIGTERM stops the server like Ctrl-C (so the temporary folder is removed); the previous handler, or None
    outside the main thread (where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)
