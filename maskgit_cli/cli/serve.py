"""The browser page: serve (runs :func:`maskgit_cli.web.server.serve`)."""

from __future__ import annotations

from typing import Annotated

import typer

from maskgit_cli.cli.common import DECODE, INPAINT, INPUTS, Device, DeviceOpt, command, out, plain
from maskgit_cli.cli.inpaint import ModelOpt, weights_of
from maskgit_cli.cli.option_checks import inpaint_settings


@command("serve", INPAINT)
@INPUTS.add(exclude=("images", "masks", "mask_kind", "mask_seed", "overwrite"))
@DECODE.add(exclude=("batch_size",))
def serve_cmd(
    *,
    inputs: dict | None = None,
    model: ModelOpt = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on: 127.0.0.1 = this machine only; 0.0.0.0 = every network interface (anyone "
            "who can reach the port can use the page: a warning says so at start-up).",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 7860,
    decode: dict | None = None,
    device_name: DeviceOpt = Device.auto,
) -> None:
    """Inpaint in the browser: a local page to open an image, paint the hole, and watch the tokens fill in.

    Open an image of any size (or pick an emoji64 test image), paint the hole with the brush or pick a generated
    mask (stroke, box, half, outpaint), choose schedule, T, sweet spot, sampler, guidance, seed and samples, press
    Inpaint and watch every step (decoded image and token mask), then download the result and report.json. The
    decoding options set the page's defaults (--lab: the lab's inference). The same settings and seed give the
    same pixels as `maskgit inpaint`. Needs the web extra: pip install 'maskgit-cli\\[web]'.

    [bold]Example[/bold]: maskgit serve  (then open http://127.0.0.1:7860)

    [bold]Your own model[/bold] (from `maskgit fit`): maskgit serve --model models/cats

    [bold]The lab's weights[/bold]: maskgit serve --transformer lab-transformer.safetensors --vqgan lab-vqgan.safetensors --lab
    """
    from maskgit_cli.web.server import serve

    inpaint_settings(**decode)  # a bad value exits 2 before anything loads

    def ready(url, folder) -> None:
        out(f"serving on {url} (Ctrl-C stops; uploads in {folder}, removed at exit)")

    serve(
        *weights_of(inputs, model),
        host=host,
        port=port,
        device=plain(device_name),
        any_vqgan=inputs["any_vqgan"],
        on_ready=ready,
        log=lambda text: typer.echo(text, err=True),
        **decode,
    )
