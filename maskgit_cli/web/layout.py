"""The page's Gradio layout, panel by panel, wired to :class:`~maskgit_cli.web.handlers.Page`'s handlers.

Left: the image panel (editor, open buttons, mask source, the Inpaint button) and the decoding panel, whose controls
start at the pipeline's settings (`maskgit serve`'s options, ``--lab`` included). Right: the output panel (status,
the input as the model sees it, every step, the result, samples and downloads). Every error a handler raises is a
message on the page.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from maskgit_cli.choices import BLENDS, FITS, SAMPLERS, SCHEDULES
from maskgit_cli.decoding.inpaint import InpaintSettings
from maskgit_cli.web.handlers import OUTPUTS, Page, page_message, replay_frame
from maskgit_cli.web.inputs import MASK_SOURCES, MAX_SAMPLES, check_editor_files, example_names

BRUSH_COLOR = "#ff00ff"
# Small images (the model's size, e.g. 64x64 emoji) shown large and sharp; a frame shows an all-white token mask.
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#step-mask img { background: #999; padding: 4px; box-sizing: border-box; }
"""
INTRO = (
    "# maskgit serve\nOpen an image (or pick an emoji64 test image), paint the hole with the brush or pick "
    "a generated mask, press **Inpaint** and watch the tokens fill in, step by step."
)


@dataclass
class ImagePanel:
    """The image to inpaint, where its hole comes from, and the Inpaint button."""

    editor: object
    upload: object
    example: object
    source: object
    mask_seed: object
    run: object


@dataclass
class DecodingPanel:
    """The decoding controls, in the order :meth:`PageSettings.from_page` takes their values."""

    schedule: object
    total_iter: object
    sweet_spot: object
    sampler: object
    guidance: object
    seed: object
    num_samples: object
    fit: object
    temperature: object
    blend: object

    def controls(self) -> list:
        """The controls in their order."""
        return [getattr(self, f.name) for f in fields(self)]


@dataclass
class OutputPanel:
    """What the Inpaint button shows, named as :data:`~maskgit_cli.web.handlers.OUTPUTS`."""

    shown: object
    step_image: object
    step_mask: object
    status: object
    result: object
    samples: object
    files: object
    replay: object  # the step slider, shown after Done
    chart: object  # the still-masked counts per step
    frames: object  # the kept frames the slider shows (per session)


def build_page(page: Page, title: str = "maskgit serve", log: Callable[[str], None] | None = None):
    """The Gradio Blocks of the page (not launched). ``log`` gets a line for every message shown on the page."""
    import gradio as gr  # the optional web extra: imported once the server has checked that it is installed

    log = log or (lambda text: None)
    # Gradio's copies of uploads and results: those over a day old are removed every hour (all of them at exit).
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(INTRO)
        if page.pipe.card.get("note"):  # what the model knows, in one line (its card: maskgit_cli/model_card.py)
            gr.Markdown(model_note(page.pipe.card), elem_id="model-note")
        with gr.Row():
            with gr.Column(scale=1):
                image = _image_panel(gr)
                decoding = _decoding_panel(gr, page.pipe.settings, page.tokens)
            with gr.Column(scale=1):
                output = _output_panel(gr)
        _wire(gr, page, image, decoding, output, log)
    return demo


def model_note(card: dict) -> str:
    """The page's line under the title: the model's name and its card's note."""
    return f"**Model {card.get('name', '')}**: {card['note']}"


def _image_panel(gr) -> ImagePanel:
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
        upload = gr.UploadButton("Open an image file", file_types=["image"], type="filepath", elem_id="upload")
        examples = example_names()
        example = gr.Dropdown(
            examples, value=None, label="or an emoji64 test image", visible=bool(examples), elem_id="example"
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
    return ImagePanel(editor, upload, example, source, mask_seed, run)


def _decoding_panel(gr, s: InpaintSettings, tokens: int) -> DecodingPanel:
    """The decoding controls, starting at the pipeline's settings ``s``; T goes up to ``tokens`` steps."""
    d = s.decode
    with gr.Accordion("Decoding", open=True):
        with gr.Row():
            schedule = gr.Dropdown(list(SCHEDULES), value=d.schedule, label="Schedule")
            sampler = gr.Radio(list(SAMPLERS), value=d.sampler, label="Sampler")
        with gr.Row():
            total_iter = gr.Slider(1, tokens, value=d.total_iter, step=1, label="T (total iterations)")
            sweet_spot = gr.Number(d.sweet_spot or 0, precision=0, minimum=0, label="Sweet spot (steps run; 0 = all T)")
        with gr.Row():
            guidance = gr.Number(s.pixel_guidance, minimum=0, label="Guidance (known pixels; 0 = off)")
            seed = gr.Number(d.seed, precision=0, label="Seed")
        with gr.Row():
            temperature = gr.Number(
                d.temperature, minimum=0, label="Temperature (1 = the official draws; lower = sharper)"
            )
            blend = gr.Radio(list(BLENDS), value=s.blend, label="Blend (holes into the known pixels)")
        with gr.Row():
            num_samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="num-samples")
            fit = gr.Radio(list(FITS), value="auto", label="Fit (other sizes than the model's)")
    return DecodingPanel(
        schedule, total_iter, sweet_spot, sampler, guidance, seed, num_samples, fit, temperature, blend
    )


def _output_panel(gr) -> OutputPanel:
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
            label="Samples", format="png", columns=4, height=260, elem_id="samples", elem_classes=["pixelated"]
        )
    files = gr.File(
        label="Downloads: result, report.json, input, mask, steps.gif", file_count="multiple", elem_id="downloads"
    )
    replay, chart, frames = _replay_parts(gr)
    return OutputPanel(shown, step_image, step_mask, status, result, samples, files, replay, chart, frames)


def _replay_parts(gr) -> tuple:
    """After Done: the step slider over the kept frames (Step and Token mask show step k; at the last step the
    order map), the chart of still-masked counts, and the frames themselves (kept per session)."""
    with gr.Row():
        replay = gr.Slider(1, 2, value=1, step=1, label="Replay: step", visible=False, elem_id="replay")
        chart = gr.Image(label="Tokens still masked, per step", type="pil", format="png", height=140,
                         elem_id="chart", buttons=[])  # fmt: skip
    return replay, chart, gr.State()


def _replay_slider(gr, steps: int | None):
    """The step slider for a decode of ``steps`` kept steps, at the last one (hidden before any, and while the
    next decode runs)."""
    if not steps:
        return gr.Slider(visible=False)
    return gr.Slider(minimum=1, maximum=max(steps, 2), value=steps, step=1, visible=True)


def _wire(gr, page: Page, image: ImagePanel, decoding: DecodingPanel, output: OutputPanel, log) -> None:
    """Connect the buttons to the page's handlers: opening an image, and Inpaint (one decode at a time)."""

    def fail(e: BaseException):
        return gr.Error(page_message(e, log), duration=None, print_exception=False)

    def opened(handler):
        """An open handler as a Gradio event: the image into the editor (brush sized to it) and the status line;
        nothing changes when the handler opens nothing (the picker was cleared)."""

        @functools.wraps(handler)
        def run(value):
            try:
                got = handler(value)
            except Exception as e:  # noqa: BLE001 - every error is a message on the page
                raise fail(e) from None
            if got is None:
                return gr.skip(), gr.skip()
            pixels, status = got
            return _editor_value(gr, pixels), status

        return run

    @functools.wraps(page.run)
    def inpaint(*values):
        try:
            for update in page.run(*values):
                if "replay" in update:
                    update["replay"] = _replay_slider(gr, update["replay"])
                yield {getattr(output, name): value for name, value in update.items()}
        except Exception as e:  # noqa: BLE001 - every error is a message on the page
            raise fail(e) from None

    _check_before_decoding(image.editor, page.max_pixels, fail)
    # opening an image does not wait for a running decode (only the Inpaint button shares the one model)
    opening = {"outputs": [image.editor, output.status], "concurrency_limit": 4}
    image.upload.upload(opened(page.open_file), inputs=[image.upload], api_name="open_file", **opening)
    image.example.input(opened(page.example), inputs=[image.example], api_name="example", **opening)
    image.run.click(
        inpaint,
        inputs=[image.editor, image.source, image.mask_seed, *decoding.controls()],
        outputs=[getattr(output, name) for name in OUTPUTS],
        api_name="inpaint",
    )
    _wire_replay(gr, page, image, output, fail)


def _wire_replay(gr, page: Page, image: ImagePanel, output: OutputPanel, fail) -> None:
    """The step slider shows the kept frames; picking a generated mask or its seed previews the masked input."""
    output.replay.change(
        replay_frame, inputs=[output.frames, output.replay], outputs=[output.step_image, output.step_mask],
        api_name="replay", concurrency_limit=4,
    )  # fmt: skip

    def preview(editor, source, mask_seed):
        try:
            shown = page.preview(editor, source, mask_seed)
        except Exception as e:  # noqa: BLE001 - every error is a message on the page
            raise fail(e) from None
        return gr.skip() if shown is None else shown

    for control in (image.source, image.mask_seed):
        control.change(preview, inputs=[image.editor, image.source, image.mask_seed], outputs=[output.shown],
                       api_name=False, concurrency_limit=4)  # fmt: skip


def _check_before_decoding(editor, max_pixels: int, fail) -> None:
    """The editor's images refused over the page's pixel limit from their headers (:func:`check_editor_files`),
    before Gradio's own preprocessing decodes them (an image sent straight to the editor, not opened by a button)."""

    def checked(self, payload):
        sent = payload
        if payload is not None and getattr(payload, "id", None) is not None:
            sent = self.blob_storage.get(payload.id)  # the canvas's images, sent as blobs before the request
        if sent is not None:
            files = [sent.background, *(sent.layers or []), sent.composite]
            try:
                check_editor_files([getattr(f, "path", f) for f in files], max_pixels)
            except Exception as e:  # noqa: BLE001 - every error is a message on the page
                raise fail(e) from None
        return type(self).preprocess(self, payload)

    editor.preprocess = types.MethodType(checked, editor)  # bound: a copy of the editor checks its own blobs


def _editor_value(gr, pixels: np.ndarray):
    """The image editor showing ``pixels``, nothing drawn, the brush sized to the image."""
    radius = max(2, min(pixels.shape[:2]) // 16)
    value = {"background": pixels, "layers": [], "composite": pixels}
    return gr.ImageEditor(value=value, brush=_brush(gr, radius))


def _brush(gr, radius: int):
    return gr.Brush(default_size=int(radius), colors=[BRUSH_COLOR], color_mode="fixed")
