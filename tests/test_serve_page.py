"""`maskgit serve` as a tool people keep open (issue 27): one checked way in for images, the opened pixels kept on
the server, the decode stopped on request, the windows the model sees, before/after and "continue from result", the
narrow layout and the accessibility hooks; in-process where possible, else in Debian's chromium driven by Playwright
(the server and browser fixtures are tests/test_serve.py's)."""

import threading
import time

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.web.handlers import Job, Page, outlined, result_names, windows_line
from maskgit_cli.web.inputs import SHOWN_SIDE, Opened, editor_image
from tests.test_serve import EMOJI, _chromium, _emoji, pipe, server  # noqa: F401 - fixtures

# ---------------------------------------------------------------------------------------------------------
# In-process


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
def test_closing_the_run_stops_the_decode_within_2_seconds_and_the_next_one_works(pipe, tmp_path):  # noqa: F811
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


def _open_page(browser, server, width=1280, height=900):  # noqa: F811
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


def _stroke(page):
    box = page.locator("#editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2 - 60, box["y"] + box["height"] / 2 - 30
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 13):
        page.mouse.move(x + 10 * k, y + 4 * k)
    page.mouse.up()


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
def test_every_way_in_is_checked_and_the_results_can_be_compared_and_continued(browser, server, tmp_path):  # noqa: F811
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
def test_stop_on_a_large_image_and_the_next_request_works(browser, server, tmp_path):  # noqa: F811
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
def test_the_result_is_in_view_on_a_phone(browser, server):  # noqa: F811
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
