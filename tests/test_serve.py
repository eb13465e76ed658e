"""`maskgit serve` (maskgit_cli/web/, the page; maskgit_cli/serve.py keeps its old import path): the page's inputs
and messages, the step stream, a server on a free port called with gradio_client (the same pixels as Inpainter, known
pixels kept, bad input a message), and the page in a real browser (Debian's chromium driven by Playwright): open an
image, paint a stroke, Inpaint, the result appears."""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.errors import MaskgitError
from maskgit_cli.web.handlers import Job, Page, outlined, result_names, windows_line
from maskgit_cli.web.inputs import (
    MASK_SOURCES,
    SHOWN_SIDE,
    Opened,
    PageSettings,
    editor_image,
    generated_mask,
    page_mask,
    read_upload,
)
from maskgit_cli.web.server import check_port
from maskgit_cli.web.streaming import Step, run_steps

ROOT = Path(__file__).resolve().parents[1]
EMOJI = ROOT / "data" / "emoji64" / "test"
STARTUP_LIMIT = 30  # seconds: the bound on the 2-core CPU


# ---------------------------------------------------------------------------------------------------------
# The page's inputs, without a server


def test_generated_masks_are_the_inpaint_commands():
    for kind in MASK_SOURCES[1:]:
        assert (generated_mask(kind, 3, 64, 64) == generate_mask(kind, mask_rng(3, 0), size=64)).all()
        other = generated_mask(kind, 3, 61, 97)  # any size: drawn at the longer side, resized (nearest)
        assert other.shape == (61, 97) and set(np.unique(other)) <= {0, 255} and (other == 0).any()


def test_the_brush_mask_and_an_empty_one():
    drawn = np.zeros((20, 30), dtype=bool)
    with pytest.raises(MaskgitError, match="the mask is empty: paint over what to inpaint"):
        page_mask("brush", drawn)
    drawn[5:9, 10:20] = True
    mask = page_mask("brush", drawn)
    assert mask.dtype == np.uint8 and (mask[drawn] == 0).all() and (mask[~drawn] == 255).all()
    with pytest.raises(MaskgitError, match="expected one of brush, stroke"):
        page_mask("lasso", drawn)


def test_the_editors_value():
    background = np.zeros((10, 12, 4), dtype=np.uint8)
    background[..., :3] = 40
    background[..., 3] = 255
    background[0, 0, 3] = 0  # transparent: flattened on white, as everywhere in the package
    layer = np.zeros((10, 12, 4), dtype=np.uint8)
    layer[2:4, 3:6] = (255, 0, 255, 255)
    layer[8, 8, 3] = 1  # a faint brush edge is still painted
    pixels, drawn = editor_image({"background": background, "layers": [layer, None], "composite": None})
    assert pixels.shape == (10, 12, 3) and (pixels[0, 0] == 255).all() and (pixels[5, 5] == 40).all()
    assert drawn.sum() == 7 and drawn[2:4, 3:6].all() and drawn[8, 8]
    with pytest.raises(MaskgitError, match="no image: open an image file"):
        editor_image({"background": None, "layers": [], "composite": None})
    with pytest.raises(MaskgitError, match="the drawing is 5x5 but the image is 12x10"):
        editor_image({"background": background, "layers": [np.zeros((5, 5, 4), np.uint8)]})
    with pytest.raises(MaskgitError, match="12x10 = 120 pixels, more than the page's limit of 100"):
        editor_image({"background": background, "layers": []}, max_pixels=100)


def test_uploads_unreadable_and_too_large(tmp_path):
    good = tmp_path / "good.png"
    Image.open(EMOJI / "image_000.png").save(good)
    assert (read_upload(good) == np.asarray(Image.open(good).convert("RGB"))).all()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(MaskgitError, match=r"^broken.png: not a readable image") as e:
        read_upload(broken)
    assert str(tmp_path) not in str(e.value)  # the page names the file, not the server's folders
    with pytest.raises(MaskgitError, match="64x64 = 4,096 pixels, more than the page's limit of 4,000"):
        read_upload(good, max_pixels=4000)


def _claims(path, width: int, height: int):
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (IHDR CRC fixed): a tiny file, a huge image."""
    import struct
    import zlib

    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Any image decoded while this is on fails the test (Pillow's ``load``)."""
    from PIL import ImageFile

    def refuse(self):
        raise AssertionError(f"decoded {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_an_oversized_editor_image_is_refused_from_its_header(tmp_path, no_decoding):
    from maskgit_cli.web.inputs import check_editor_files

    huge = _claims(tmp_path / "huge.png", 5000, 5000)
    message = r"^the image is 5000x5000 = 25,000,000 pixels, more than the page's limit of 16,777,216: use a smaller"
    with pytest.raises(MaskgitError, match=message):
        check_editor_files([None, huge])
    with pytest.raises(MaskgitError, match=message):
        check_editor_files([huge.read_bytes()])  # the canvas's blobs
    with pytest.raises(MaskgitError, match="^the editor's image: not a readable image"):
        check_editor_files([b"not an image"])
    check_editor_files([_claims(tmp_path / "fine.png", 4096, 4096), None])


def test_the_editor_refuses_an_oversized_image_before_gradio_decodes_it(tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio", reason="needs the web extra: pip install -e '.[dev,web]'")
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData
    from PIL import ImageFile

    from maskgit_cli.web.layout import _check_before_decoding

    with gr.Blocks():
        editor = gr.ImageEditor(type="numpy", image_mode="RGBA")
    _check_before_decoding(editor, 16_777_216, lambda e: gr.Error(str(e)))
    small = tmp_path / "small.png"
    Image.open(EMOJI / "image_000.png").save(small)
    value = editor.preprocess(EditorData(background=FileData(path=str(small)), layers=[], composite=None))
    assert value["background"].shape == (64, 64, 4)  # what fits is decoded as before
    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real(self))
    huge = _claims(tmp_path / "huge.png", 5000, 5000)
    with pytest.raises(gr.Error, match="5000x5000 = 25,000,000 pixels, more than the page's limit"):
        editor.preprocess(EditorData(background=FileData(path=str(huge)), layers=[], composite=None))
    assert decoded == []


def test_page_settings_from_the_controls():
    s = PageSettings.from_page("square", 6.0, 0, "halton", "25", 3.0, 2, "crop")
    # only what the page sets goes to the library: sweet spot 0 (all T) and an empty temperature or blend are the
    # pipeline's (serve --lab sets blend none)
    assert s.decoding == {"schedule": "square", "total_iter": 6, "sampler": "halton", "pixel_guidance": 25.0,
                          "seed": 3}  # fmt: skip
    assert (s.num_samples, s.fit) == (2, "crop")
    assert s.call() == {"num_samples": 2, "fit": "crop", **s.decoding}
    assert PageSettings.from_page("cosine", 8, 5, "confidence", None, None, None, "auto").decoding["sweet_spot"] == 5
    both = PageSettings.from_page("cosine", 8, 0, "confidence", 50, 0, 1, "auto", "1", "none").decoding
    assert (both["temperature"], both["blend"]) == (1.0, "none")
    for args, message in (
        (("cosine", "eight", 0, "confidence", 50, 0, 1, "auto"), "T \\(total iterations\\) 'eight': not a number"),
        (("cosine", 8, 1.5, "confidence", 50, 0, 1, "auto"), "sweet spot 1.5: a whole number is needed"),
        (("cosine", 8, 0, "confidence", 50, 0, 9, "auto"), "samples 9: between 1 and 8"),
        (("cosine", 8, 0, "confidence", float("nan"), 0, 1, "auto"), "guidance nan: not a finite number"),
    ):
        with pytest.raises(MaskgitError, match=message):
            PageSettings.from_page(*args)


def test_the_library_checks_the_pages_settings():
    """The page restates no default and no rule: the library's settings take the pipeline's defaults where the page
    sets nothing, and refuse a bad value with their own one-line error naming the option."""
    from maskgit_cli.decoding.inpaint import InpaintSettings

    defaults = {"total_iter": 12, "temperature": 0.7, "blend": "none", "sweet_spot": 4}
    used = PageSettings.from_page("square", 6, 0, "halton", 25, 3, 1, "auto").resolve(defaults)
    want = InpaintSettings.from_options(**{**defaults, "schedule": "square", "total_iter": 6, "sampler": "halton",
                                           "pixel_guidance": 25.0, "seed": 3})  # fmt: skip
    assert used == want and (used.decode.temperature, used.blend, used.decode.sweet_spot) == (0.7, "none", 4)
    assert PageSettings.from_page("cosine", 8, 0, "confidence", 50, 0, 1, "auto").resolve({}) == InpaintSettings()
    for args, message in (
        (("cosine", 8, 0, "confidence", 50, 0, 1, "auto", 0, None), "^--temperature 0.0: must be a finite number > 0"),
        (("cosine", 8, 0, "confidence", 50, 0, 1, "auto", None, "smooth"), "^--blend smooth: expected one of poisson"),
        (("spiral", 8, 0, "confidence", 50, 0, 1, "auto"), "spiral"),
        (("cosine", 8, 9, "confidence", 50, 0, 1, "auto"), "^--sweet-spot 9: must be between 1 and --total-iter"),
    ):
        with pytest.raises(MaskgitError, match=message):
            PageSettings.from_page(*args).resolve({})


def test_the_command_listens_on_127_0_0_1_port_7860_by_default(cli):
    from typer.main import get_command

    from maskgit_cli.cli import app

    params = {p.name: p for p in get_command(app).commands["serve"].params}
    assert params["host"].default == "127.0.0.1" and params["port"].default == 7860
    assert params["transformer"].default is None and params["vqgan"].default is None  # the shipped weights
    assert params["lab"].default is False and "batch_size" not in params
    r = cli("serve", "--port", "0")
    assert r.exit_code == 2 and "--port" in r.stderr


def test_a_busy_port_is_refused_before_anything_loads():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MaskgitError, match=f"^port {port} on 127.0.0.1 is busy .*: pass another --port$"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again
    with pytest.raises(MaskgitError, match="--host no.such.host.invalid: not a known address"):
        check_port("no.such.host.invalid", port)


# ---------------------------------------------------------------------------------------------------------
# The step stream, in-process


@pytest.fixture(scope="module")
def pipe():
    from maskgit_cli.decoding.pipeline import Inpainter

    return Inpainter.from_pretrained(device="cpu")


def _emoji(name: str) -> np.ndarray:
    return np.array(Image.open(EMOJI / name).convert("RGB"))


@pytest.mark.slow
def test_run_steps_streams_every_step_then_the_inpainters_pixels(pipe):
    image, mask = _emoji("image_002.png"), generated_mask("box", 0, 64, 64)
    events = list(run_steps(pipe, image, mask, num_samples=2, total_iter=5, seed=1))
    steps, results = events[:-1], events[-1]
    assert all(isinstance(s, Step) for s in steps)
    assert [(s.sample, s.step) for s in steps] == [(k, t) for k in range(2) for t in range(1, 6)]
    assert all(s.image.size == (64, 64) and s.mask.size == (64, 64) for s in steps)
    assert np.asarray(steps[0].mask).min() == 0 and np.asarray(steps[4].mask).min() == 255  # all known at the end
    for k in range(2):  # the tokens still masked after every step, as the Inpainter counts them
        want = pipe.fill([image], [mask == 0], k, total_iter=5, seed=1)[0].still_masked
        assert [s.still_masked for s in steps if s.sample == k] == want
    direct = pipe(image, mask, num_samples=2, total_iter=5, seed=1)
    assert len(results) == 2 and all((np.asarray(a) == np.asarray(b)).all() for a, b in zip(results, direct))

    # a larger image with two groups of holes: two windows, shown side by side; counts summed as `inpaint` reports
    wide = np.array(Image.fromarray(image).resize((300, 200), Image.BICUBIC))
    holes = np.zeros((200, 300), dtype=bool)
    holes[20:40, 20:50] = holes[150:180, 230:280] = True
    events = list(run_steps(pipe, wide, np.where(holes, 0, 255).astype(np.uint8), total_iter=4))
    filled = pipe.fill([wide], [holes], total_iter=4)[0]
    assert len(filled.windows) == 2 and all(s.image.size == (64 * 2 + 6, 68) for s in events[:-1])
    assert [s.still_masked for s in events[:-1]] == filled.still_masked
    assert (np.asarray(events[-1][0]) == filled.image).all()

    stream = run_steps(pipe, image, mask, total_iter=16)  # the page stops listening: the decode stops too
    assert next(stream).step == 1
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "maskgit-serve-decode"]

    with pytest.raises(MaskgitError, match="too small to inpaint"):
        list(run_steps(pipe, image[:10, :10], mask[:10, :10]))
    with pytest.raises(MaskgitError, match="^fit stretch: expected one of auto"):  # the Inpainter's own check
        list(run_steps(pipe, image, mask, fit="stretch"))


# ---------------------------------------------------------------------------------------------------------
# A server on a free port, as `maskgit serve` runs it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tracebacks(stderr: str) -> list[str]:
    """The exception lines of the tracebacks in a server log, except a client that went away in the middle of an
    upload (starlette's ClientDisconnect, logged by uvicorn: the client's doing, and the server goes on serving)."""
    found = []
    for block in stderr.split("Traceback (most recent call last):")[1:]:
        last = next((line for line in block.splitlines() if line and not line[0].isspace()), "")
        if "ClientDisconnect" not in last:
            found.append(last)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`maskgit serve --port P --device cpu` in a subprocess, in an empty working folder; stopped with SIGTERM at
    the end, which must remove its temporary folder, leave the working folder empty and log no traceback."""
    pytest.importorskip("gradio", reason="needs the web extra: pip install -e '.[dev,web]'")
    cwd = tmp_path_factory.mktemp("serve-cwd")
    logs = tmp_path_factory.mktemp("serve-logs")
    port = _free_port()
    # torch's CPU results depend on its thread count: the server uses this process's (1 under pytest, conftest)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop("MASKGIT_DEBUG", None)
    start = time.perf_counter()
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "maskgit_cli", "serve", "--port", str(port), "--device", "cpu"],
            cwd=cwd,
            stdout=out,
            stderr=err,
            env=env,
        )
    try:
        while "serving on" not in (logs / "stdout").read_text():
            if proc.poll() is not None or time.perf_counter() - start > 120:
                pytest.fail(f"maskgit serve did not start: {(logs / 'stderr').read_text()}")
            time.sleep(0.1)
        startup = time.perf_counter() - start
        line = (logs / "stdout").read_text().strip()
        folder = Path(line.split("uploads in ")[1].split(",")[0])
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{port}", port=port, line=line, folder=folder, startup=startup, logs=logs, cwd=cwd
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    stderr = (logs / "stderr").read_text()
    assert code == 0, stderr
    assert not folder.exists(), "the temporary folder outlived the server"
    assert list(cwd.iterdir()) == [], "the server wrote into its working folder"
    assert not _tracebacks(stderr), stderr


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server.url + "/", download_files=str(tmp_path / "downloads"), verbose=False)


def _editor(background: Path, layer: Path | None = None) -> dict:
    """The image editor's value as the page sends it: the image and the brush's layer (RGBA, painted = opaque)."""
    from gradio_client import handle_file

    layers = [handle_file(str(layer))] if layer else []
    return {"background": handle_file(str(background)), "layers": layers, "composite": None}


def _inpaint(client, editor, source="brush", mask_seed=0, schedule="cosine", total_iter=8, sweet_spot=0,
             sampler="confidence", guidance=50, seed=0, num_samples=1, fit="auto", temperature=0.5,
             blend="poisson"):  # fmt: skip
    """The Inpaint button through the page's API: (status, result, samples, downloads by name)."""
    client.predict(editor, source, mask_seed, api_name="/read")  # kept in the session for the decode
    out = client.predict(schedule, total_iter, sweet_spot, sampler, guidance, seed, num_samples, fit, temperature,
                         blend, api_name="/inpaint")  # fmt: skip
    status, result, gallery, files = out[3], out[4], out[5], out[6]
    samples = [g["image"] if isinstance(g, dict) else g for g in gallery or []]
    return status, result, samples, {Path(f).name: Path(f) for f in files}


@pytest.mark.slow
def test_it_starts_on_127_0_0_1_within_30_seconds(server):
    assert server.line.startswith(f"serving on http://127.0.0.1:{server.port} (Ctrl-C stops; uploads in ")
    assert server.folder.is_dir() and server.folder.name.startswith("maskgit-serve-")
    assert server.startup < STARTUP_LIMIT, f"started in {server.startup:.1f} s"


@pytest.mark.slow
def test_the_page_gives_the_inpainters_pixels(server, client, pipe, tmp_path):
    image_path = EMOJI / "image_005.png"
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).line([(8, 12), (30, 30), (52, 40)], fill=(255, 0, 255, 255), width=7)
    layer.save(tmp_path / "layer.png")
    start = time.perf_counter()
    status, result, samples, files = _inpaint(
        client, _editor(image_path, tmp_path / "layer.png"), schedule="square", total_iter=6, seed=3, num_samples=2
    )
    seconds = time.perf_counter() - start
    assert status.startswith("Done in ") and "64x64" in status and "2 result(s)" in status

    image = Image.open(image_path)
    mask = np.where(np.asarray(layer)[..., 3] > 0, 0, 255).astype(np.uint8)
    direct = pipe(image, mask, num_samples=2, schedule="square", total_iter=6, seed=3)
    page = [np.asarray(Image.open(p).convert("RGB")) for p in (files["result_0.png"], files["result_1.png"])]
    assert all((a == np.asarray(b)).all() for a, b in zip(page, direct)), "the page and Inpainter differ"
    assert (np.asarray(Image.open(result).convert("RGB")) == page[0]).all()
    assert len(samples) == 2 and (np.asarray(Image.open(samples[1]).convert("RGB")) == page[1]).all()
    known = mask == 255
    assert page[0].shape == (64, 64, 3) and (page[0][known] == np.asarray(image.convert("RGB"))[known]).all()
    assert (page[0][~known] != np.asarray(image.convert("RGB"))[~known]).any()

    assert (np.asarray(Image.open(files["mask.png"])) == mask).all()
    assert (np.asarray(Image.open(files["input.png"])) == np.asarray(image.convert("RGB"))).all()
    report = json.loads(files["report.json"].read_text())
    assert report["results"] == ["result_0.png", "result_1.png"] and report["num_samples"] == 2
    assert report["settings"]["decode"]["schedule"] == "square" and report["settings"]["decode"]["seed"] == 3
    assert report["settings"]["decode"]["total_iter"] == 6 and report["settings"]["pixel_guidance"] == 50
    assert report["input"] == {"file": "input.png", "width": 64, "height": 64}
    assert report["mask"]["hole_pixels"] == int((~known).sum())
    assert len(report["still_masked"]) == 6 and report["still_masked"][-1] == 0
    assert report["transformer"].endswith("maskgit-emoji64.safetensors")
    print(f"64x64, T=6, 2 samples: {report['seconds']:.2f} s decoding, {seconds:.2f} s through the page")


@pytest.mark.slow
def test_any_size_image_with_a_generated_mask(server, client, pipe, tmp_path):
    image = Image.open(EMOJI / "image_009.png").convert("RGB").resize((97, 61), Image.BICUBIC)
    image.save(tmp_path / "wide.png")
    status, result, samples, files = _inpaint(client, _editor(tmp_path / "wide.png"), "box", 2, total_iter=4)
    assert "97x61" in status and samples == []
    mask = generated_mask("box", 2, 61, 97)
    got = np.asarray(Image.open(files["result.png"]))
    assert got.shape == (61, 97, 3) and (got == np.asarray(pipe(image, mask, total_iter=4))).all()
    assert (got[mask == 255] == np.asarray(image)[mask == 255]).all()
    assert json.loads(files["report.json"].read_text())["input"] == {"file": "input.png", "width": 97, "height": 61}


@pytest.mark.slow
def test_the_pages_blend_and_temperature_are_the_inpainters(server, client, pipe):
    image = Image.open(EMOJI / "image_003.png").convert("RGB")
    mask = generated_mask("box", 1, 64, 64)
    results = {}
    for blend, temperature in (("poisson", 0.5), ("none", 1.0)):
        status, result, samples, files = _inpaint(
            client, _editor(EMOJI / "image_003.png"), "box", 1, total_iter=4, temperature=temperature, blend=blend
        )
        got = np.asarray(Image.open(files["result.png"]).convert("RGB"))
        want = np.asarray(pipe(image, mask, total_iter=4, temperature=temperature, blend=blend))
        assert (got == want).all(), (blend, temperature)
        settings = json.loads(files["report.json"].read_text())["settings"]
        assert settings["blend"] == blend and settings["decode"]["temperature"] == temperature
        results[blend] = got
    assert (results["poisson"] != results["none"]).any()


@pytest.mark.slow
def test_bad_input_is_a_message_on_the_page_and_the_server_keeps_serving(server, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    image = EMOJI / "image_000.png"
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "nothing.png")
    with pytest.raises(AppError, match="^the mask is empty: paint over what to inpaint with the brush"):
        _inpaint(client, _editor(image, tmp_path / "nothing.png"))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(AppError, match="^broken.png: not a readable image"):
        client.predict(handle_file(str(tmp_path / "broken.png")), api_name="/open_file")
    Image.new("RGB", (4097, 4096), (10, 20, 30)).save(tmp_path / "huge.png")
    with pytest.raises(AppError, match="4097x4096 = 16,781,312 pixels, more than the page's limit of 16,777,216"):
        client.predict(handle_file(str(tmp_path / "huge.png")), api_name="/open_file")
    with pytest.raises(AppError, match="more than the page's limit"):
        _inpaint(client, _editor(tmp_path / "huge.png"), "box")
    with pytest.raises(AppError, match="--sweet-spot 9: must be between 1 and --total-iter \\(8\\)"):
        _inpaint(client, _editor(image), "half", sweet_spot=9)

    shown, status = client.predict(1, api_name="/example")  # still serving
    assert status.startswith("Opened image_001.png: 64x64.")
    shown = np.asarray(Image.open(shown).convert("RGB"))  # the editor's copy: 512x512, whole pixels
    assert (shown[::8, ::8] == _emoji("image_001.png")).all()
    shown, status = client.predict(handle_file(str(image)), api_name="/open_file")
    assert status == "Opened image_000.png: 64x64. Paint the hole, then Inpaint."
    log = (server.logs / "stderr").read_text()
    assert "page: the mask is empty" in log and "page: broken.png: not a readable image" in log
    assert "Traceback" not in log


@pytest.mark.slow
def test_a_second_server_on_the_same_port_is_one_error_line(server):
    r = subprocess.run(
        [sys.executable, "-m", "maskgit_cli", "serve", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    expected = f"Error: port {server.port} on 127.0.0.1 is busy (another server is using it): pass another --port"
    assert r.stderr.strip().splitlines() == [expected] and r.stdout == ""


# ---------------------------------------------------------------------------------------------------------
# In a real browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture
def browser():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


# Every text the status line shows, in order (the steps stream by faster than a test polls).
WATCH_STATUS = """() => {
    const status = document.querySelector('#status');
    window.statuses = [];
    new MutationObserver(() => window.statuses.push(status.innerText.trim()))
        .observe(status, {subtree: true, childList: true, characterData: true});
}"""


def _stroke(page, dx: int = -60, dy: int = -30, segments: int = 12):
    """Drag the brush across the editor's canvas: from (dx, dy) off its centre, ``segments`` moves of (10, 4)."""
    box = page.locator("#editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2 + dy
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, segments + 1):
        page.mouse.move(x + 10 * k, y + 4 * k)
    page.mouse.up()


@pytest.mark.slow
def test_the_page_in_a_browser(browser, server, tmp_path):
    """Open an image, paint a stroke, ask for 2 samples, press Inpaint: steps stream, the result appears, known
    pixels are kept. The screenshot goes to docs/serve.png with MASKGIT_UPDATE_SCREENSHOT=1 (the README's)."""
    name = "image_007.png"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(120_000)  # a loaded 2-core CI machine runs other tests beside this one
    page.goto(server.url + "/")
    page.wait_for_selector("#inpaint")
    page.locator("input[type=file][data-testid$='-upload-button']").set_input_files(str(EMOJI / name))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Opened')")
    page.wait_for_timeout(500)
    _stroke(page, -100, -40, 20)
    page.get_by_text("Advanced: decoding").click()  # a closed accordion
    page.locator("#num-samples input[type=number]").fill("2")
    page.locator("#num-samples input[type=number]").press("Enter")
    page.evaluate(WATCH_STATUS)
    page.locator("#inpaint").click()
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')", timeout=120_000)
    seen = page.evaluate("window.statuses")
    assert "Step 8/8 of sample 2/2..." in seen and seen.index("Step 1/8 of sample 1/2...") < len(seen) - 1, seen
    page.wait_for_selector("#result img", state="visible")  # outputs may render just after the status
    page.wait_for_selector("#step-mask img", state="visible")
    links = page.locator("#downloads a[download]")
    href = {links.nth(i).get_attribute("download"): links.nth(i).get_attribute("href") for i in range(5)}
    assert sorted(href) == ["image_007-inpainted-0.png", "image_007-inpainted-1.png", "input.png", "mask.png",
                           "report.json"]  # fmt: skip

    def fetch(file):
        return np.asarray(Image.open(io.BytesIO(page.request.get(href[file]).body())))

    result, mask = fetch("image_007-inpainted-0.png"), fetch("mask.png")
    assert result.shape == (64, 64, 3) and 50 < (mask == 0).sum() < 4096 - 50  # the stroke made a hole
    assert (result[mask == 255] == _emoji(name)[mask == 255]).all()
    page.evaluate("window.scrollTo(0, 0)")
    update = os.environ.get("MASKGIT_UPDATE_SCREENSHOT") == "1"
    shot = ROOT / "docs" / "serve.png" if update else tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000


def test_a_host_other_machines_can_reach_is_a_warning_at_start_up(monkeypatch):
    from maskgit_cli.web import server

    for host in ("127.0.0.1", "localhost", "::1"):
        assert server.host_warning(host, 7860) is None
    assert server.host_warning("0.0.0.0", 7860) == (
        "Warning: --host 0.0.0.0 opens the page to every network interface of this machine: anyone who can reach "
        "port 7860 can use it and upload images (there is no login); --host 127.0.0.1 keeps it to this machine."
    )
    warning = server.host_warning("192.168.1.4", 80)
    assert warning.startswith("Warning: --host 192.168.1.4 opens the page to the network: anyone who can reach port 80")

    def stop():  # serve() stops here, before loading anything
        raise MaskgitError("stopped")

    monkeypatch.setattr(server, "_import_gradio", stop)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
        lines = []
        with pytest.raises(MaskgitError, match="stopped"):
            server.serve(host=host, port=port, log=lines.append)
        assert lines == ([server.host_warning(host, port)] if warned else [])


# ---------------------------------------------------------------------------------------------------------
# The replay (issue 27, items 1 and 6): the first sample's frames kept, a step slider after Done (marked
# still-masked tokens, the order map last), the animation among the downloads, a short status with a chart, T
# capped at the masked tokens as the pipeline caps it (same pixels), a generated mask previewed when picked.


@pytest.mark.slow
def test_the_page_caps_t_as_the_inpainter_does_with_the_same_pixels(server, client, pipe, tmp_path):
    image = Image.open(EMOJI / "image_004.png").convert("RGB")
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 0, 255, 255), (20, 20, 30, 26))  # a small stroke: a few tokens
    layer.save(tmp_path / "layer.png")
    mask = np.where(np.asarray(layer)[..., 3] > 0, 0, 255).astype(np.uint8)
    masked = int(sum(m.sum() for m in pipe.token_masks([np.asarray(image)], [mask == 0])[0]))
    total_iter = masked + 5
    status, result, samples, files = _inpaint(client, _editor(EMOJI / "image_004.png", tmp_path / "layer.png"),
                                              total_iter=total_iter)  # fmt: skip
    capped = f"T={total_iter} exceeds the {masked} masked tokens: capped at {masked} — the extra steps change nothing"
    assert status.startswith("Done in ") and capped in status, status
    assert f"{masked} tokens filled in {masked} steps" in status and "after each step" not in status
    with pytest.warns(Warning, match="capped at"):
        direct = np.asarray(pipe(image, mask, total_iter=total_iter))
    assert (np.asarray(Image.open(files["result.png"]).convert("RGB")) == direct).all()
    report = json.loads(files["report.json"].read_text())
    assert len(report["still_masked"]) == masked
    with Image.open(files["steps.gif"]) as gif:  # input, every step, result (a last step equal to it: merged)
        assert masked + 1 <= gif.n_frames <= masked + 2


WAIT_NEW_STEP = """(old) => {
    const img = document.querySelector('#step-image img');
    return img && img.src !== old;
}"""


@pytest.mark.slow
def test_replay_after_done_and_the_mask_preview_in_a_browser(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(server.url + "/")
    page.wait_for_selector("#inpaint")
    page.locator("input[type=file][data-testid$='-upload-button']").set_input_files(str(EMOJI / "image_006.png"))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Opened')")
    page.wait_for_timeout(500)
    assert page.locator("#shown img").count() == 0
    page.locator("input[type=radio][value=box]").check()  # a generated mask: previewed before Inpaint
    page.wait_for_selector("#shown img", state="visible")

    page.locator("#inpaint").click()
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')")
    status = page.locator("#status").inner_text()
    assert "tokens filled in 8 steps" in status and "after each step" not in status, status
    page.wait_for_selector("#replay", state="visible")
    page.wait_for_selector("#chart img", state="visible")
    page.wait_for_selector("#step-image img", state="visible")
    last = page.locator("#step-image img").get_attribute("src")
    slider = page.locator("#replay input[type=number]")
    assert slider.input_value() == "8"
    slider.fill("2")
    slider.press("Enter")
    page.wait_for_function(WAIT_NEW_STEP, arg=last)  # another step's picture
    second = page.locator("#step-image img").get_attribute("src")
    slider.fill("8")
    slider.press("Enter")
    page.wait_for_function(WAIT_NEW_STEP, arg=second)
    downloads = page.locator("#downloads a[download]")
    names = {downloads.nth(i).get_attribute("download") for i in range(downloads.count())}
    assert "steps.gif" in names, names


# ---------------------------------------------------------------------------------------------------------
# The page as a tool (issue 27): one checked way in, the opened pixels kept on the server, Stop, the windows,
# before/after, continue from result, the narrow layout and the accessibility hooks; in-process


def test_a_large_image_stays_on_the_server_and_the_drawing_is_scaled_up_to_it():
    pixels = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    opened = Opened.of("photo.jpg", pixels)
    assert opened.shown.shape == (SHOWN_SIDE * 3 // 4, SHOWN_SIDE, 3) and opened.stem == "photo"
    h, w = opened.shown.shape[:2]
    layer = np.zeros((h, w, 4), dtype=np.uint8)
    layer[100:120, 200:260, 3] = 255  # what the brush painted on the shown copy
    value = {"background": np.dstack([opened.shown, np.full((h, w), 255, np.uint8)]), "layers": [layer]}
    got, drawn = editor_image(value, opened=opened)
    assert got is pixels and drawn.shape == (1500, 2000)  # the server's pixels, not the browser's copy
    scale = 2000 / SHOWN_SIDE
    assert drawn[int(110 * scale), int(230 * scale)] and not drawn[0, 0]
    assert abs(drawn.sum() - 20 * 60 * scale * scale) < 0.05 * drawn.sum()
    # an editor that shows something else (the API sends its own image) is taken as it is
    small = np.zeros((64, 64, 3), dtype=np.uint8)
    got, drawn = editor_image({"background": small, "layers": []}, opened=opened)
    assert got.shape == (64, 64, 3) and drawn.shape == (64, 64)
    shown = Opened.of("e.png", _emoji("image_002.png")).shown  # a small image is shown large, in whole pixels
    assert shown.shape == (SHOWN_SIDE, SHOWN_SIDE, 3) and (shown[::8, ::8] == _emoji("image_002.png")).all()


def test_the_downloads_carry_the_opened_files_name_and_the_windows_are_outlined():
    assert result_names(1, "photo") == ["photo-inpainted.png"]
    assert result_names(2, "photo") == ["photo-inpainted-0.png", "photo-inpainted-1.png"]
    assert result_names(1) == ["result.png"]  # an image the API sent without a name
    picture = np.zeros((1000, 2 * SHOWN_SIDE, 3), dtype=np.uint8)
    drawn = outlined(picture, [(20, 40, 200, 200)])  # on the shown copy: half the size
    assert drawn.shape == (500, SHOWN_SIDE, 3)
    assert (drawn[20, 10:110] != 0).any(axis=1).all() and (drawn[60, 50] == 0).all()  # the edge, not the inside
    assert windows_line({}) == ""
    line = windows_line({"windows": [[0, 0, 300, 200]], "scales": [[4.6875, 3.125]], "model_size": 64})
    assert line == " in 1 window of the model's 64x64 (outlined; scaled 4.69x)"


@pytest.mark.slow
def test_closing_the_run_stops_the_decode_within_2_seconds_and_the_next_one_works(pipe, tmp_path):
    """Stop closes the page's generator (Gradio's cancels=): the decode thread is gone within 2 s; the next
    request gives the Inpainter's pixels."""
    page = Page(pipe, tmp_path)
    image = np.array(Image.fromarray(_emoji("image_004.png")).resize((640, 480), Image.BICUBIC))
    mask = np.full((480, 640), 255, np.uint8)
    mask[100:300, 200:400] = 0
    controls = ("cosine", 64, 0, "confidence", 50, 0, 1, "auto", None, None)
    updates = page.run(Job(image, mask, "photo"), *controls)
    while not str(next(updates).get("status") or "").startswith("Step 2/"):
        pass
    start = time.perf_counter()
    updates.close()
    while [t for t in threading.enumerate() if t.name == "maskgit-serve-decode"]:
        assert time.perf_counter() - start < 2, "the decode went on after Stop"
        time.sleep(0.01)
    assert page.stop() == "Stopped after Step 2/64. Press Inpaint to start again."
    last = list(page.run(Job(image, mask, "photo"), "cosine", 4, 0, "confidence", 50, 0, 1, "auto", None, None))[-1]
    assert last["status"].startswith("Done") and last["result"].endswith("photo-inpainted.png")
    got = np.asarray(Image.open(last["result"]))
    assert (got == np.asarray(pipe(image, mask, total_iter=4))).all()
    before, after = last["compare"]
    assert before.endswith("input.png") and (np.asarray(Image.open(before)) == image).all() and after == last["result"]


# ---------------------------------------------------------------------------------------------------------
# In a real browser


def _open_page(browser, server, width=1280, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(120_000)  # a loaded 2-core CI machine runs other tests beside this one
    page.goto(server.url + "/")
    page.wait_for_selector("#inpaint")
    page.wait_for_function("document.querySelector('#status').getAttribute('aria-live')")  # the page's script ran
    return page


def _status(page) -> str:
    return page.locator("#status").inner_text().strip()


def _wait_status(page, start: str, timeout=120_000):
    page.wait_for_function(f"document.querySelector('#status').innerText.trim().startsWith({start!r})", timeout=timeout)


def _open_file(page, path):
    page.locator("input[type=file][data-testid$='-upload-button']").set_input_files(str(path))
    _wait_status(page, f"Opened {path.name}")
    page.wait_for_timeout(500)  # the editor draws the image


def _error(page) -> str:
    page.wait_for_selector(".toast-body", state="visible")
    text = page.locator(".toast-body").last.inner_text()
    page.locator(".toast-close").last.click()
    return text


@pytest.mark.slow
def test_every_way_in_is_checked_and_the_results_can_be_compared_and_continued(browser, server, tmp_path):
    """A text file renamed .png dropped on the editor is a message and the page keeps working; an example opens
    from its thumbnail with the same status line as a file; the trash clears the strokes, not the image; after
    Done: the before/after slider, the result's download named after the file, alt text on every image, and
    "Continue from result" opens the result as the new image."""
    page = _open_page(browser, server)
    # the page's script has run: the status is a live region, the radio groups are named
    page.wait_for_function("document.querySelector('#status').getAttribute('aria-live') === 'polite'")
    assert page.locator("[role=radiogroup][aria-label^=Mask]").count() == 1
    drop = page.evaluate_handle("""() => { const files = new DataTransfer();
        files.items.add(new File(['not an image'], 'notes.png', {type: 'image/png'})); return files; }""")
    page.dispatch_event("#editor canvas", "drop", {"dataTransfer": drop})
    assert "notes.png: not a readable image" in _error(page)

    page.locator("#examples button.gallery-item").nth(3).click()
    _wait_status(page, "Opened image_003.png: 64x64. Paint the hole, then Inpaint.")
    page.wait_for_timeout(500)
    _stroke(page)
    page.locator("#editor button[aria-label='Clear canvas']").click()
    page.wait_for_timeout(1000)
    page.locator("#inpaint").click()
    assert "the mask is empty" in _error(page)  # the strokes went, and the image stayed (else: "no image")
    _stroke(page)
    page.locator("#inpaint").click()
    _wait_status(page, "Done")
    page.wait_for_function("document.querySelector('#status').innerText.includes('s in all from the click)')")
    page.wait_for_selector("#compare img", state="visible")
    assert page.locator("#compare img").count() == 2  # before and after
    assert page.locator("#result a[download]").first.get_attribute("download") == "image_003-inpainted.png"
    views = "#result img, #compare img, #shown img, #step-image img, #step-mask img, #examples img"
    alts = page.evaluate(f"[...document.querySelectorAll({views!r})].map(img => img.alt)")
    assert len(alts) > 6 and all(alts), alts

    page.locator("#continue").click()
    _wait_status(page, "Opened image_003-inpainted.png: 64x64.")
    _stroke(page)
    page.locator("#inpaint").click()
    _wait_status(page, "Done")
    assert page.locator("#result a[download]").first.get_attribute("download") == "image_003-inpainted-inpainted.png"


STOP_BOUND_MS = 10_000  # the last step after a Stop click, in the browser (measured 4.9 s, load 12-17 on 2 cores)
# When Stop was clicked, and every status after it with its time (ms, the browser's clock).
WATCH_STOP = """() => {
    const status = document.querySelector('#status');
    window.seen = [];
    document.querySelector('#stop').addEventListener('click', () => { window.stopped = performance.now(); }, true);
    new MutationObserver(() => window.seen.push([performance.now(), status.innerText.trim()]))
        .observe(status, {subtree: true, childList: true, characterData: true});
}"""


@pytest.mark.slow
def test_stop_on_a_large_image_and_the_next_request_works(browser, server, tmp_path):
    big = Image.fromarray(_emoji("image_007.png")).resize((2560, 3000), Image.BICUBIC)
    big.save(tmp_path / "large.png")
    page = _open_page(browser, server)
    _open_file(page, tmp_path / "large.png")
    assert "inpainted in 64x64 windows" in _status(page)
    _stroke(page)
    page.get_by_text("Advanced: decoding").click()
    steps = page.locator("#total-iter input[type=number]")
    steps.fill("128")
    steps.press("Enter")
    page.wait_for_function("document.querySelector('#total-iter input[type=range]').value === '128'")
    page.locator("#inpaint").click()
    # steps can arrive faster than the page polls: any step from the third on (of T, or of the masked tokens when
    # the stroke masks fewer than T tokens in every window: the pipeline caps T there)
    page.wait_for_function(r"/^Step ([3-9]|\d\d+)\/\d+/.test(document.querySelector('#status').innerText.trim())")
    page.evaluate(WATCH_STOP)
    page.locator("#stop").click()
    _wait_status(page, "Stopped after Step")  # once the decode has ended (Page.stop)
    clicked, seen = page.evaluate("[window.stopped, window.seen]")
    streamed = [t for t, text in seen if text.startswith("Step")]
    # the decode itself ends within 2 s of the server hearing Stop (test_closing_the_run_stops_the_decode...); here
    # the browser adds its own delay: Gradio's editor reads its canvas back while steps stream (seconds each on a
    # loaded 2-core machine with software GL), so the bound is looser
    assert not streamed or max(streamed) - clicked < STOP_BOUND_MS, (clicked, seen)
    stopped = _status(page)
    page.wait_for_timeout(1_000)
    assert _status(page) == stopped
    steps.fill("4")
    steps.press("Enter")
    page.get_by_label("box").check()  # another input: not the same preview file as the stopped request's
    page.locator("#inpaint").click()
    _wait_status(page, "Done")
    assert "2560x3000" in _status(page)


@pytest.mark.slow
def test_the_result_is_in_view_on_a_phone(browser, server):
    page = _open_page(browser, server, 390, 844)
    page.locator("#examples button.gallery-item").nth(5).click()
    _wait_status(page, "Opened image_005.png")
    page.wait_for_timeout(500)
    page.locator("#editor").scroll_into_view_if_needed()
    _stroke(page)
    page.locator("#inpaint").click()
    _wait_status(page, "Done")
    page.wait_for_selector("#result img", state="visible")
    page.wait_for_timeout(500)
    box = page.locator("#result img").bounding_box()
    assert 0 <= box["y"] and box["y"] + 40 <= 844, box  # on screen without the user scrolling
