"""The page's Gradio layout, panel by panel, wired to :class:`~maskgit_cli.web.handlers.Page`'s handlers.

Left: the image panel (editor, open buttons, mask source, the Inpaint button) and the decoding panel, whose controls
start at the pipeline's settings (`maskgit serve`'s options, ``--lab`` included). Right: the output panel (status,
the input as the model sees it, every step, the result, samples and downloads). Every error a handler raises is a
message on the page.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass, fields

from maskgit_cli.choices import BLENDS, FITS, SAMPLERS, SCHEDULES
from maskgit_cli.decoding.inpaint import InpaintSettings
from maskgit_cli.web.handlers import OUTPUTS, Page, page_message, replay_frame
from maskgit_cli.web.inputs import (
    EXAMPLES,
    MASK_SOURCES,
    MAX_SAMPLES,
    SHOWN_SIDE,
    check_editor_files,
    example_names,
)

BRUSH_COLOR = "#ff00ff"
# Small images (the model's size, e.g. 64x64 emoji) shown large and sharp; a frame shows an all-white token mask.
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#step-mask img { background: #999; padding: 4px; box-sizing: border-box; }
#examples img { image-rendering: pixelated; }
"""
# The page's script (run once it loads): every file dropped or pasted on the editor goes through the Open button
# (the server's checks and status line, never the editor's own unchecked loading); Ctrl+Z (Cmd+Z) over the editor is
# its Undo button; the status is a live region; radio groups are named after their labels.
PAGE_JS = """() => {
    const open = (file) => {
        const input = document.querySelector('input[type=file][data-testid$="-upload-button"]');
        const files = new DataTransfer();
        files.items.add(file);
        input.files = files.files;
        input.dispatchEvent(new Event('change', {bubbles: true}));
    };
    const onEditor = (event) => event.target.closest && event.target.closest('#editor');
    document.addEventListener('dragover', (event) => { if (onEditor(event)) event.preventDefault(); }, true);
    document.addEventListener('drop', (event) => {
        if (!onEditor(event) || !event.dataTransfer || !event.dataTransfer.files.length) return;
        event.preventDefault();
        event.stopPropagation();
        open(event.dataTransfer.files[0]);
    }, true);
    document.addEventListener('paste', (event) => {
        const file = [...(event.clipboardData ? event.clipboardData.files : [])][0];
        if (!file || event.target.closest('input, textarea')) return;
        event.preventDefault();
        event.stopPropagation();
        open(file);
    }, true);
    let overEditor = false;
    document.addEventListener('pointerover', (event) => { overEditor = Boolean(onEditor(event)); }, true);
    document.addEventListener('keydown', (event) => {
        if (!(event.ctrlKey || event.metaKey) || event.key.toLowerCase() !== 'z') return;
        if (!overEditor && !onEditor(event)) return;
        const button = document.querySelector(
            event.shiftKey ? '#editor button[aria-label=Redo]' : '#editor button[aria-label=Undo]');
        if (button) { event.preventDefault(); button.click(); }
    }, true);
    const label = () => {
        const status = document.querySelector('#status');
        if (status && !status.hasAttribute('aria-live')) {
            status.setAttribute('role', 'status');
            status.setAttribute('aria-live', 'polite');
        }
        document.querySelectorAll('.named-group').forEach((group) => {
            const name = group.querySelector('[data-testid=block-info]');
            const set = group.querySelector('fieldset, .wrap') || group;
            if (name && !set.hasAttribute('aria-label')) {
                set.setAttribute('role', 'radiogroup');
                set.setAttribute('aria-label', name.innerText.trim());
            }
        });
        // images without alt text (examples, outputs) get their file's or their view's name
        document.querySelectorAll('img:not([alt]), img[alt=""]').forEach((img) => {
            const view = img.closest('.block');
            const named = view && view.querySelector('[data-testid=block-label]');
            const file = decodeURIComponent(img.src.split('/').pop() || '');
            const examples = view && view.id === 'examples';
            img.alt = examples ? `emoji64 test image ${file}` : (named ? named.innerText.trim() : file);
        });
    };
    new MutationObserver(label).observe(document.body, {childList: true, subtree: true});
    label();
}"""
# Inpaint pressed: the first stage (the browser sends the drawing), the time noted for the total wait; on a narrow
# screen the page scrolls to the status. Done: the total wait beside the decode time, and the result in view.
SENDING_JS = """(status) => {
    window.maskgitClicked = performance.now();
    if (window.innerWidth < 768) document.querySelector('#status').scrollIntoView({block: 'start'});
    return 'Sending the drawing...';
}"""
DONE_JS = """(status) => {
    const wait = (performance.now() - window.maskgitClicked) / 1000;
    if (window.innerWidth < 768) document.querySelector('#result').scrollIntoView({block: 'start'});
    return status + ` (${wait.toFixed(1)} s in all from the click)`;
}"""
# The opened image's shown copy (a hidden image's value) into the editor, nothing drawn.
SHOW_JS = "(shown) => shown ? {background: shown, layers: [], composite: shown} : null"
# Where the page's examples show as thumbnails, this many at a time.
EXAMPLES_PER_PAGE = 24
INTRO = (
    "# maskgit serve\nOpen an image (or pick an emoji64 test image), paint the hole with the brush or pick "
    "a generated mask, press **Inpaint** and watch the tokens fill in, step by step."
)


@dataclass
class ImagePanel:
    """The image to inpaint (``opened``: the session's :class:`Opened`, kept on the server), where its hole comes
    from, and the Inpaint and Stop buttons."""

    editor: object
    opened: object
    shown: object
    upload: object
    example: object
    source: object
    mask_seed: object
    run: object
    stop: object


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
    compare: object
    carry_on: object
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
        sources=(),  # files dropped or pasted on it go through the Open button (PAGE_JS)
        transforms=(),
        layers=False,
        brush=gr.Brush(default_size=SHOWN_SIDE // 16, colors=[BRUSH_COLOR], color_mode="fixed"),
        format="png",
        height=420,
        elem_id="editor",
        elem_classes=["pixelated"],
    )
    opened = gr.State(None)
    shown = gr.Image(type="numpy", format="png", visible="hidden", elem_id="opened-copy")
    upload = gr.UploadButton(
        "Open an image file (or drop / paste one on the editor)", file_types=["image"], type="filepath",
        elem_id="upload",
    )  # fmt: skip
    with gr.Row():
        source = gr.Radio(
            list(MASK_SOURCES),
            value="brush",
            label="Mask",
            info="brush: what you painted; or a generated mask (as `maskgit inpaint --mask-kind`)",
            elem_classes=["named-group"],
        )
        mask_seed = gr.Number(0, precision=0, minimum=0, label="Mask seed")
    with gr.Row():
        run = gr.Button("Inpaint", variant="primary", elem_id="inpaint", scale=3)
        stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
    example = _examples(gr)
    return ImagePanel(editor, opened, shown, upload, example, source, mask_seed, run, stop)


def _examples(gr):
    """The emoji64 test images as thumbnails, a page at a time (hidden for an installed package, which has none)."""
    names = example_names()
    return gr.Dataset(
        components=[gr.Image(render=False, type="filepath")],
        samples=[[str(EXAMPLES / n)] for n in names],
        type="index",
        layout="gallery",
        samples_per_page=EXAMPLES_PER_PAGE,
        label="or an emoji64 test image",
        visible=bool(names),
        elem_id="examples",
    )


def _decoding_panel(gr, s: InpaintSettings, tokens: int) -> DecodingPanel:
    """The decoding controls, starting at the pipeline's settings ``s``; T goes up to ``tokens`` steps."""
    d = s.decode
    with gr.Accordion("Advanced: decoding", open=False):
        with gr.Row():
            schedule = gr.Dropdown(list(SCHEDULES), value=d.schedule, label="Schedule")
            sampler = gr.Radio(list(SAMPLERS), value=d.sampler, label="Sampler", elem_classes=["named-group"])
        with gr.Row():
            total_iter = gr.Slider(
                1, tokens, value=d.total_iter, step=1, label="T (total iterations)", elem_id="total-iter"
            )
            sweet_spot = gr.Number(d.sweet_spot or 0, precision=0, minimum=0, label="Sweet spot (steps run; 0 = all T)")
        with gr.Row():
            guidance = gr.Number(s.pixel_guidance, minimum=0, label="Guidance (known pixels; 0 = off)")
            seed = gr.Number(d.seed, precision=0, label="Seed")
        with gr.Row():
            temperature = gr.Number(
                d.temperature, minimum=0, label="Temperature (1 = the official draws; lower = sharper)"
            )
            blend = gr.Radio(
                list(BLENDS), value=s.blend, label="Blend (holes into the known pixels)", elem_classes=["named-group"]
            )
        with gr.Row():
            num_samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples", elem_id="num-samples")
            fit = gr.Radio(
                list(FITS), value="auto", label="Fit (other sizes than the model's)", elem_classes=["named-group"]
            )
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
    result, compare, carry_on = _result_views(gr)
    samples = gr.Gallery(
        label="Samples", format="png", columns=4, height="auto", elem_id="samples", elem_classes=["pixelated"]
    )
    files = gr.File(
        label="Downloads: result, report.json, input, mask, steps.gif", file_count="multiple", elem_id="downloads"
    )
    replay, chart, frames = _replay_parts(gr)
    return OutputPanel(
        shown, step_image, step_mask, status, result, samples, files, compare, carry_on, replay, chart, frames
    )


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


def _result_views(gr):
    """The result (its file, so its download keeps its name), the before/after slider, "Continue from result"."""
    with gr.Row():
        result = gr.Image(
            label="Result",
            type="filepath",
            format="png",
            height=260,
            buttons=["download", "fullscreen"],
            interactive=False,
            elem_id="result",
            elem_classes=["pixelated"],
            alt_text="The inpainted image",
        )
        compare = gr.ImageSlider(
            label="Before / after (drag)",
            type="filepath",
            format="png",
            height=260,
            buttons=["fullscreen"],
            interactive=False,
            elem_id="compare",
            elem_classes=["pixelated"],
        )
    carry_on = gr.Button("Continue from result (the result becomes the image)", elem_id="continue")
    return result, compare, carry_on


def _wire(gr, page: Page, image: ImagePanel, decoding: DecodingPanel, output: OutputPanel, log) -> None:
    """Connect the buttons to the page's handlers: opening an image (every source through :meth:`Page.open_file`),
    the trash, Inpaint (one decode at a time) with its stages, and Stop."""

    def fail(e: BaseException):
        return gr.Error(page_message(e, log), duration=None, print_exception=False)

    def guarded(handler):
        """A handler whose errors are messages on the page."""

        @functools.wraps(handler)
        def run(*values):
            try:
                return handler(*values)
            except Exception as e:  # noqa: BLE001 - every error is a message on the page
                raise fail(e) from None

        return run

    def opened(handler):
        """An open handler as a Gradio event: the image's shown copy into the editor (brush sized to it), the status
        line, and the opened image kept on the server for the session."""
        checked = guarded(handler)

        @functools.wraps(handler)
        def run(value):
            got, status = checked(value)
            return got.shown, status, got

        return run

    @functools.wraps(page.run)
    def inpaint(*values):
        try:
            with contextlib.closing(page.run(*values)) as updates:  # Stop closes this generator: close the decode
                for update in updates:
                    if "replay" in update:
                        update["replay"] = _replay_slider(gr, update["replay"])
                    yield {getattr(output, name): value for name, value in update.items()}
        except Exception as e:  # noqa: BLE001 - every error is a message on the page
            raise fail(e) from None

    _check_before_decoding(image.editor, page.max_pixels, fail)
    # opening an image does not wait for a running decode (only the Inpaint button shares the one model)
    # The editor is never a Python event's output: Gradio's browser side then asks it for its value (a read-back of
    # its canvas) at every later update of any event, every decoding step included. The image it shows comes
    # through a hidden image and a browser-only event; the trash puts it back the same way (strokes cleared).
    opening = {"outputs": [image.shown, output.status, image.opened], "concurrency_limit": 4}
    show = {"fn": None, "js": SHOW_JS, "inputs": [image.shown], "outputs": [image.editor]}
    for trigger, handler, source, name in (
        (image.upload.upload, page.open_file, image.upload, "open_file"),
        (image.example.click, page.example, image.example, "example"),
        (output.carry_on.click, page.open_file, output.result, "continue"),
    ):
        trigger(opened(handler), inputs=[source], api_name=name, **opening).success(**show)
    image.editor.clear(**show)
    # Inpaint in two events: reading the editor, then the decode on what was read (kept on the server). Gradio's
    # browser side asks every input of a running event for its value at each update it receives, and the editor
    # answers by reading its canvas back (WebGL readPixels): as an input of the decode it cost seconds per step.
    status = {"inputs": [output.status], "outputs": [output.status]}
    job = gr.State(None)
    image.run.click(None, js=SENDING_JS, **status)
    reading = image.run.click(
        guarded(page.read),
        inputs=[image.editor, image.opened, image.source, image.mask_seed],
        outputs=[job, output.status],
        api_name="read",
        concurrency_limit=4,
    )
    running = reading.success(
        inpaint,
        inputs=[job, *decoding.controls()],
        outputs=[getattr(output, name) for name in OUTPUTS],
        api_name="inpaint",
    )
    running.success(None, js=DONE_JS, **status)
    # Stop: the queue closes the running generator, which stops the decode at its next step (web/streaming.py); the
    # status says so once the decode has ended, naming the last step it reached (Page.stop)
    stopping = image.stop.click(None, js="() => 'Stopping...'", outputs=[output.status], cancels=[reading, running])
    stopping.then(page.stop, outputs=[output.status], concurrency_limit=None, api_name=False)
    _wire_replay(gr, page, image, output, fail)


def _wire_replay(gr, page: Page, image: ImagePanel, output: OutputPanel, fail) -> None:
    """The step slider shows the kept frames; picking a generated mask or its seed previews the masked input (of
    the image kept on the server: the editor's canvas is not read)."""
    output.replay.change(
        replay_frame, inputs=[output.frames, output.replay], outputs=[output.step_image, output.step_mask],
        api_name="replay", concurrency_limit=4,
    )  # fmt: skip

    def preview(opened, source, mask_seed):
        try:
            shown = page.preview(opened, source, mask_seed)
        except Exception as e:  # noqa: BLE001 - every error is a message on the page
            raise fail(e) from None
        return gr.skip() if shown is None else shown

    for control in (image.source, image.mask_seed):
        control.change(preview, inputs=[image.opened, image.source, image.mask_seed], outputs=[output.shown],
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
