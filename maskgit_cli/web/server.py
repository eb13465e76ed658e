"""The server's life: check the port, load the models once, launch the page, serve until Ctrl-C or SIGTERM, then
remove the temporary folder (uploads and results) and close the page."""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from maskgit_cli.decoding.inpaint import with_defaults
from maskgit_cli.decoding.pipeline import Inpainter
from maskgit_cli.errors import MaskgitError, OptionError
from maskgit_cli.web.handlers import Page
from maskgit_cli.web.inputs import MAX_PIXELS
from maskgit_cli.web.layout import CSS, PAGE_JS, build_page

MAX_UPLOAD = "200mb"  # the largest file the page accepts


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
    ``on_ready(url, folder)`` is called once the page answers; ``log`` gets progress lines, first the warning of a
    ``host`` that other machines can reach (:func:`host_warning`)."""
    log = log or (lambda text: None)
    check_port(host, port)
    warning = host_warning(host, port)
    if warning:
        log(warning)
    with _temporary_folder() as folder, _sigterm_stops():
        demo = None
        try:
            gr = _import_gradio()
            transformer, vqgan = with_defaults(transformer, vqgan)
            log(f"loading {transformer} and {vqgan}")
            pipe = Inpainter.from_pretrained(transformer, vqgan, device, **options)
            page = Page(pipe, folder, max_pixels, {"transformer": transformer, "vqgan": vqgan})
            demo = build_page(page, log=log)
            _launch(gr, demo, host, port)
            if on_ready:
                on_ready(f"http://{f'[{host}]' if ':' in host else host}:{port}", folder)
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            log("stopping")
        finally:
            if demo is not None:
                demo.close()


def check_port(host: str, port: int) -> None:
    """A one-line MaskgitError when ``host:port`` cannot be listened on (busy, or not an address of this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise OptionError(f"--host {host}: not a known address ({e})") from None
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


def host_warning(host: str, port: int) -> str | None:
    """The start-up warning for a ``host`` that opens the page beyond this machine (anything but a loopback
    address: 0.0.0.0, ::, a network address or a name of one); None for 127.0.0.1, ::1, localhost."""
    try:
        addresses = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, port)}
        except (OSError, UnicodeError, ValueError):
            addresses = set()
    if addresses and all(a.is_loopback for a in addresses):
        return None
    where = "every network interface of this machine" if any(a.is_unspecified for a in addresses) else "the network"
    return (
        f"Warning: --host {host} opens the page to {where}: anyone who can reach port {port} can use it and "
        "upload images (there is no login); --host 127.0.0.1 keeps it to this machine."
    )


def _import_gradio():
    """Gradio, the optional web extra, imported here only: a missing extra is one error line, and its analytics are
    off before it loads."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise MaskgitError(
            "`maskgit serve` needs Gradio: pip install 'maskgit-cli[web]' (or `make install` in a checkout)"
        ) from None
    return gradio


def _launch(gr, demo, host: str, port: int) -> None:
    """Start serving ``demo`` in the background: one decode at a time, other requests wait their turn."""
    demo.queue(default_concurrency_limit=1)
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
            js=PAGE_JS,
            footer_links=[],
            enable_monitoring=False,
            max_file_size=MAX_UPLOAD,
        )
    except OSError as e:
        raise MaskgitError(
            f"port {port} on {host} is busy or cannot be listened on ({e}): pass another --port"
        ) from None


@contextmanager
def _temporary_folder() -> Iterator[Path]:
    """A fresh temporary folder, which also holds Gradio's uploads and copies of the results; removed at the end
    (and Gradio's temporary folder setting restored)."""
    folder = Path(tempfile.mkdtemp(prefix="maskgit-serve-"))
    saved = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    try:
        yield folder
    finally:
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM stops the server like Ctrl-C (so the temporary folder is removed), the previous handler restored at
    the end; nothing outside the main thread (where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
