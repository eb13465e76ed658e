"""The `maskgit` command line: a thin Typer layer over the library modules.

Each command parses options, calls one library function and prints the result (results on stdout,
progress and logs on stderr). No math lives here. torch and the library are imported inside the commands,
so `maskgit --help` stays instant. Expected errors (:class:`MaskgitError`) print one line `Error: ...` and
exit 1; set MASKGIT_DEBUG=1 to see the traceback instead. Bad option values exit 2 (Typer's usage errors).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import MaskgitError

app = typer.Typer(
    name="maskgit",
    help="MaskGIT image inpainting end to end: VQGAN tokens, masked visual token training, iterative "
    "inpainting under a mask schedule, and FID.\n\nRun `maskgit COMMAND --help` for a command's options and examples.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DeviceOpt = Annotated[Device, typer.Option("--device", help="auto = cuda if available, else cpu.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (results are reproducible for a given seed).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")]


def command(name: str | None = None, **kwargs):
    """Register a command whose MaskgitError becomes one `Error: ...` line and exit code 1."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            try:
                return fn(*args, **kw)
            except MaskgitError as e:
                if os.environ.get("MASKGIT_DEBUG") == "1":
                    raise
                typer.echo(f"Error: {e}", err=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                if os.environ.get("MASKGIT_DEBUG") == "1":
                    raise
                typer.echo("Interrupted.", err=True)
                raise typer.Exit(130) from None

        app.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def _out(text: str = "") -> None:
    """A result line on stdout."""
    typer.echo(text)


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"maskgit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    pass


def _device(device: Device):
    from .runtime import resolve_device

    return resolve_device(device.value)


def _load(path: Path, kind: str, device=None):
    from .weights import load_model

    return load_model(path, kind, device or "cpu")


# ----------------------------------------------------------------------------------------------------------
# weights and token files


@command("info")
def info_cmd(
    file: Annotated[Path, typer.Argument(help="A maskgit weights (.safetensors) or token cache (.tokens) file.")],
    as_json: JsonOpt = False,
) -> None:
    """Show what a weights or token file holds: its kind, config and tensors.

    [bold]Example[/bold]: maskgit info weights/vqgan-emoji64.safetensors --json
    """
    from .weights import describe

    info = describe(file)
    if as_json:
        _print_json(info)
        return
    _out(f"{info['path']}: kind={info['kind']} maskgit_version={info.get('maskgit_version')}")
    for key, value in info.items():
        if key in ("path", "kind", "maskgit_version", "tensors", "files"):
            continue
        _out(f"  {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    if "files" in info:
        files = info["files"]
        _out(f"  files: {len(files)} ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})")
    for t in info["tensors"][:20]:
        _out(f"  {t['name']:<50} {t['dtype']:<5} {tuple(t['shape'])}")
    if len(info["tensors"]) > 20:
        _out(f"  ... {len(info['tensors']) - 20} more tensors")


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise MaskgitError(f"{option} {text!r}: expected comma-separated numbers, e.g. 0.5,0.5,0.5") from None
    if len(values) != 3:
        raise MaskgitError(f"{option} {text!r}: expected 3 values (R,G,B)")
    return values


@command("convert-vqgan")
def convert_vqgan_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The lab's VQGAN.pt (a plain state_dict).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .safetensors file.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="The lab's VQGAN.yml (default: the lab's architecture).")
    ] = None,
    mean: Annotated[
        str | None, typer.Option("--mean", help="Normalization mean R,G,B (default: the lab's train mean).")
    ] = None,
    std: Annotated[str | None, typer.Option("--std", help="Normalization std R,G,B (default: the lab's).")] = None,
) -> None:
    """Import the lab's VQGAN checkpoint into a self-describing safetensors file.

    Loads with torch.load(weights_only=True) and checks every key and shape; a mismatch lists the missing,
    unexpected and mis-shaped keys. Images are normalized with the lab's train mean/std unless --mean/--std.

    [bold]Example[/bold]: maskgit convert-vqgan VQGAN.pt --config VQGAN.yml -o lab-vqgan.safetensors
    """
    from .convert import convert_lab_vqgan
    from .weights import model_fingerprint, save_model

    model = convert_lab_vqgan(checkpoint, config, _floats(mean, "--mean"), _floats(std, "--std"))
    save_model(output, model, "vqgan")
    _out(f"wrote {output} ({model.num_params():,} parameters, fingerprint {model_fingerprint(model)[:12]})")


@command("tokenize")
def tokenize_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of images (sorted file-name order is kept).")],
    vqgan: Annotated[Path, typer.Option("--vqgan", help="VQGAN weights (.safetensors).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Token cache to write, e.g. train.tokens.")],
    flip: Annotated[
        bool, typer.Option("--flip", help="Also append the tokens of horizontally flipped images.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per VQGAN batch.")] = 64,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip unreadable files (counted in the summary) instead of failing.")
    ] = False,
    resize: Annotated[bool, typer.Option("--resize", help="Resize images of another size instead of failing.")] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=0, help="Image decoding processes (default: by core count).")
    ] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Encode an image folder into a cached token index file (N,16,16) for training.

    [bold]Example[/bold]: maskgit tokenize data/emoji64/train --vqgan weights/vqgan-emoji64.safetensors -o runs/train.tokens --flip
    """
    from .tokens import tokenize_folder

    dev = _device(device)
    model = _load(vqgan, "vqgan", dev)
    s = tokenize_folder(
        images,
        model,
        output,
        batch_size=batch_size,
        device=dev,
        flip=flip,
        skip_invalid=skip_invalid,
        resize=resize,
        num_workers=workers,
    )
    _out(
        f"wrote {s.output}: {s.rows} token grids {s.grid[0]}x{s.grid[1]} from {s.images} images"
        f"{' (+ flips)' if flip else ''}, {len(s.skipped)} skipped, {s.images / max(s.seconds, 1e-9):.1f} img/s"
    )
    for name in s.skipped[:10]:
        typer.echo(f"skipped: {name}", err=True)


class MaskKind(str, Enum):
    stroke = "stroke"
    box = "box"
    half = "half"
    outpaint = "outpaint"


@command("masks")
def masks_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of images to make masks for (sorted name order).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the masks (mask_000.png, ...).")],
    kind: Annotated[
        MaskKind, typer.Option("--kind", help="Free-form strokes (like the lab's), a box, a half, or outpainting.")
    ] = MaskKind.stroke,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Mask i is drawn from (seed, i): reproducible.")] = 0,
    masked_out: Annotated[
        Path | None, typer.Option("--masked-out", help="Also write the masked images (holes gray 128) here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write lab-format masks for an image folder: 8-bit PNGs, 0 (black) = hole, 255 = known.

    Stroke and box masks cover 15-40% of the pixels. Mask i pairs with the i-th image in sorted name order.

    [bold]Example[/bold]: maskgit masks my_images -o my_masks --kind stroke --seed 0 --masked-out my_masked
    """
    from .masks import write_masks

    summary = write_masks(images, output, kind.value, seed, masked_out)
    if as_json:
        _print_json(summary)
        return
    hf = summary["hole_fraction"]
    _out(
        f"wrote {summary['count']} {kind.value} masks to {output} ({summary['first']} .. {summary['last']}), "
        f"holes {hf['mean']:.1%} on average ({hf['min']:.1%}-{hf['max']:.1%})"
        + (f"; masked images in {masked_out}" if masked_out else "")
    )


def main() -> None:
    """Console-script entry point."""
    app(prog_name="maskgit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
