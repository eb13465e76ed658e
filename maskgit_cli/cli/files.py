"""Files and speed: info, bench train, bench inpaint, bench tokenize."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from maskgit_cli.cli.common import (
    FILES,
    Device,
    DeviceOpt,
    JsonOpt,
    Precision,
    TransformerPreset,
    VQGANPreset,
    bench_app,
    command,
    device,
    out,
    print_json,
    result,
    shown_default,
)
from maskgit_cli.decoding.settings import DecodeSettings

TransformerPresetOpt = Annotated[TransformerPreset, typer.Option("--preset", help="Transformer preset.")]
VQGANPresetOpt = Annotated[
    VQGANPreset, typer.Option("--vqgan-preset", help="VQGAN preset (local: the default weights').")
]


def _batch_size(what: str, cuda: int, cpu: int) -> Any:
    """--batch-size of a benchmark, whose default depends on the device."""
    return typer.Option("--batch-size", min=1, help=f"{what} {shown_default(f'{cuda} on CUDA, {cpu} on CPU')}")


@command("info", FILES)
def info_cmd(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A maskgit weights (.safetensors) or token cache (.tokens) file, or a model folder (its card). "
            "Without it: which default weights inpaint and sweep use."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a weights or token file holds: its kind, config and tensors; a model folder's card (what it was
    trained on, its stages and validation figures); or, without FILE, the default weights.

    [bold]Example[/bold]: maskgit info weights/vqgan-emoji64.safetensors --json

    [bold]A model folder[/bold]: maskgit info weights  (or the folder `maskgit fit` wrote)
    """
    from maskgit_cli.model_card import is_model_folder
    from maskgit_cli.weights import DEFAULT_WEIGHTS, default_weights, describe

    if file is not None and is_model_folder(file):
        model_info(file, as_json)
        return
    if file is None:
        found = {kind: str(default_weights(kind)) for kind in DEFAULT_WEIGHTS}
        if as_json:
            print_json({"default_weights": found})
            return
        for kind, path in found.items():
            out(f"default {kind}: {path}")
        return
    info = describe(file)
    if as_json:
        print_json(info)
        return
    out(f"{info['path']}: kind={info['kind']} maskgit_version={info.get('maskgit_version')}")
    for key, value in info.items():
        if key in ("path", "kind", "maskgit_version", "tensors", "files"):
            continue
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        out(f"  {key}: {text if len(text) <= 600 else f'({len(text):,} characters; see --json)'}")
    if "files" in info:
        files = info["files"]
        out(f"  files: {len(files)} ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})")
    for t in info["tensors"][:20]:
        out(f"  {t['name']:<50} {t['dtype']:<5} {tuple(t['shape'])}")
    if len(info["tensors"]) > 20:
        out(f"  ... {len(info['tensors']) - 20} more tensors")


def model_info(folder: Path, as_json: bool) -> None:
    """`maskgit info MODEL`: the model folder's files and card."""
    from maskgit_cli.model_card import card_lines, open_model_folder

    m = open_model_folder(folder)
    if as_json:
        print_json({"path": str(m.path), "vqgan": str(m.vqgan), "transformer": str(m.transformer), "card": m.card})
        return
    out(f"{m.path}: model folder {m.card.get('name', '(no card.json)')!r}")
    if m.card.get("note"):
        out(f"  note: {m.card['note']}")
    for label, text in card_lines(m.card):
        out(f"  {label}: {text}")
    out(f"  files: {m.vqgan.name}, {m.transformer.name}")
    out(f"  inpaint with it: maskgit inpaint --model {m.path} --images IMAGES --mask-kind stroke -o OUT")


@command("train", group=bench_app)
def bench_train_cmd(
    preset: TransformerPresetOpt = TransformerPreset.small,
    batch_size: Annotated[int | None, _batch_size("Images per step.", cuda=256, cpu=32)] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision", help="bf16 autocast, fp32, or auto (bf16 where the hardware computes it natively)."
        ),
    ] = Precision.auto,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Timed steps. " + shown_default("20 on CUDA, 5 on CPU"))
    ] = None,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Training throughput of a transformer preset: img/s, achieved TFLOP/s and MFU against the matmul peak
    measured in the same run, in the same precision. Times `maskgit train`'s own training step.

    [bold]Example[/bold]: maskgit bench train --preset lab --device cuda --json
    """
    from maskgit_cli.bench import bench_train

    r = bench_train(preset.value, device(device_name), batch_size, precision.value, compile, steps)
    result(
        r.to_dict(),
        as_json,
        f"{r.preset} ({r.params / 1e6:.1f}M params) on {r.device}, batch {r.batch_size}, {r.precision}"
        f"{', compiled' if r.compile else ''}: {r.images_per_second:,.1f} img/s, {r.achieved_tflops:.3f} TFLOP/s "
        f"of a measured {r.peak_tflops:.3f} TFLOP/s matmul peak = {r.mfu:.1%} MFU",
    )


@command("inpaint", group=bench_app)
def bench_inpaint_cmd(
    preset: TransformerPresetOpt = TransformerPreset.small,
    vqgan_preset: VQGANPresetOpt = VQGANPreset.local,
    total_iter: Annotated[int, typer.Option("--total-iter", min=1, help="Decode steps T.")] = DecodeSettings.total_iter,
    batch_size: Annotated[int | None, _batch_size("Images inpainted together.", cuda=512, cpu=32)] = None,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Inpainting throughput (VQGAN encode, T decode steps, VQGAN decode) with random weights.

    [bold]Example[/bold]: maskgit bench inpaint --preset lab --vqgan-preset lab --total-iter 8 --json
    """
    from maskgit_cli.bench import bench_inpaint

    r = bench_inpaint(preset.value, vqgan_preset.value, device(device_name), batch_size, total_iter)
    result(
        r.to_dict(),
        as_json,
        f"{r.preset} + VQGAN {r.vqgan_preset} on {r.device}, batch {r.batch_size}, T={r.total_iter}, {r.precision}: "
        f"{r.images_per_second:,.1f} img/s end to end, {r.decode_only_images_per_second:,.1f} img/s token decoding only",
    )


@command("tokenize", group=bench_app)
def bench_tokenize_cmd(
    vqgan_preset: VQGANPresetOpt = VQGANPreset.local,
    images: Annotated[
        int | None,
        typer.Option(
            "--images",
            min=1,
            help="Random 64x64 PNGs to write and tokenize. " + shown_default("8192 on CUDA, 64 on CPU"),
        ),
    ] = None,
    folder: Annotated[
        Path | None, typer.Option("--folder", help="Tokenize this image folder instead of random PNGs.")
    ] = None,
    batch_size: Annotated[int | None, _batch_size("Images per VQGAN batch.", cuda=256, cpu=32)] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="Image decoding processes. " + shown_default("by core count")),
    ] = None,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Tokenize throughput, end to end from PNG files (decoding, VQGAN encoding, cache write) with random weights:
    `maskgit tokenize`'s own code on a folder of random PNGs (or --folder).

    [bold]Example[/bold]: maskgit bench tokenize --vqgan-preset lab --device cuda --json
    """
    from maskgit_cli.bench import bench_tokenize

    r = bench_tokenize(vqgan_preset.value, device(device_name), batch_size, images, folder, workers)
    result(
        r.to_dict(),
        as_json,
        f"VQGAN {r.vqgan_preset} on {r.device}, batch {r.batch_size}, {r.precision}, {r.workers} decoding workers: "
        f"{r.images} PNG files in {r.seconds:.2f} s = {r.images_per_second:,.1f} img/s end to end",
    )
