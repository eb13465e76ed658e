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
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli import __version__
from maskgit_cli.errors import MaskgitError

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


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(StrEnum):
    bf16 = "bf16"
    fp32 = "fp32"


class AutoPrecision(StrEnum):
    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


DeviceOpt = Annotated[Device, typer.Option("--device", help="auto = cuda if available, else cpu.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (results are reproducible for a given seed).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")]


class MaskKind(StrEnum):
    stroke = "stroke"
    box = "box"
    half = "half"
    outpaint = "outpaint"


class Schedule(StrEnum):
    cosine = "cosine"
    linear = "linear"
    square = "square"
    logarithm = "logarithm"
    cubic = "cubic"
    sqrt = "sqrt"
    exp = "exp"
    arccos = "arccos"


class Sampling(StrEnum):
    sample = "sample"
    argmax = "argmax"


class TokenRule(StrEnum):
    any = "any"
    majority = "majority"


class FidMode(StrEnum):
    clean = "clean"
    legacy_pytorch = "legacy_pytorch"


FidModeOpt = Annotated[
    FidMode,
    typer.Option(
        "--mode",
        help="clean = clean-fid's Inception and anti-aliased resize (the default); legacy_pytorch = pytorch-fid's "
        "network and resize, the mode comparable to the lab's FID numbers. Numbers of the two modes differ.",
    ),
]
InceptionOpt = Annotated[
    Path | None,
    typer.Option(
        "--inception",
        help="Inception weights file (default: $MASKGIT_INCEPTION, else clean-fid's cache, else a download).",
    ),
]
FidBatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per Inception batch.")]
FidWorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=0, help="Image decoding/resizing processes (default: by core count).")
]


class SweepMetric(StrEnum):
    auto = "auto"
    fid = "fid"
    psnr = "psnr"


def command(name: str | None = None, group: typer.Typer | None = None, **kwargs):
    """Register a command (on ``group``, default the main app) whose MaskgitError becomes one `Error: ...`
    line and exit code 1."""

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

        (group or app).command(name, **kwargs)(wrapper)
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
    from maskgit_cli.runtime import resolve_device

    return resolve_device(device.value)


def _load(path: Path, kind: str, device=None):
    from maskgit_cli.weights import load_model

    return load_model(path, kind, device or "cpu")


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


def _given(**options) -> dict:
    """The options given on the command line (not None), enum values unwrapped: they override saved settings."""
    return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in options.items() if v is not None}


def _resumed_run(resume: Path, output: Path | None) -> tuple[Path, dict]:
    """(run folder, its saved config.json) for --resume RUN; -o may be omitted or must name the same folder."""
    if output is not None and output.resolve() != resume.resolve():
        raise MaskgitError(f"--resume {resume} and -o {output} name different runs")
    try:
        return resume, json.loads((resume / "config.json").read_text())
    except (OSError, ValueError):
        raise MaskgitError(f"--resume {resume}: not a training run (no readable config.json)") from None


# ----------------------------------------------------------------------------------------------------------
# Data


@command("masks", rich_help_panel="Data")
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
    from maskgit_cli.data.mask_generator import write_masks

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


# ----------------------------------------------------------------------------------------------------------
# Stage 1: the VQGAN (images <-> 16x16 tokens)


@command("convert-vqgan", rich_help_panel="Stage 1: VQGAN (images <-> 16x16 tokens)")
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
    from maskgit_cli.vqgan.lab_import import convert_lab_vqgan
    from maskgit_cli.weights import model_fingerprint, save_model

    model = convert_lab_vqgan(checkpoint, config, _floats(mean, "--mean"), _floats(std, "--std"))
    save_model(output, model, "vqgan")
    _out(f"wrote {output} ({model.num_params():,} parameters, fingerprint {model_fingerprint(model)[:12]})")


@command("train-vqgan", rich_help_panel="Stage 1: VQGAN (images <-> 16x16 tokens)")
def train_vqgan_cmd(
    images: Annotated[
        Path | None, typer.Argument(help="Folder of training images (taken from the run when resuming).")
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Run folder, e.g. runs/vqgan-emoji64.")] = None,
    val: Annotated[
        Path | None, typer.Option("--val", help="Validation images: PSNR/SSIM/codebook usage; picks best.safetensors.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue the run in this folder exactly where it stopped (settings come from the run)."
        ),
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="VQGAN preset: small, base, lab or tiny. [default: small]")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs. [default: 30, unless --max-steps is given]")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after this many steps (first of the two limits).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Images per step. [default: 16]")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", min=0.0, help="Peak learning rate (AdamW, warmup then cosine). [default: 5e-4]"),
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option("--warmup-steps", min=0, help="Linear warmup steps. [default: 200]")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the initial weights, data order and flips. [default: 0]")
    ] = None,
    precision: Annotated[
        Precision | None, typer.Option("--precision", help="bf16 autocast (CUDA and CPU) or fp32. [default: bf16]")
    ] = None,
    gan_start: Annotated[
        int | None, typer.Option("--gan-start", min=0, help="Add the PatchGAN loss from this step (default: no GAN).")
    ] = None,
    gan_weight: Annotated[
        float | None, typer.Option("--gan-weight", help="Weight of the adversarial loss. [default: 0.1]")
    ] = None,
    flip: Annotated[
        bool | None, typer.Option("--flip/--no-flip", help="Random horizontal flips. [default: flip]")
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", min=0, help="Steps between validations (0 = every epoch).")
    ] = None,
    save_every: Annotated[
        int | None, typer.Option("--save-every", min=0, help="Steps between checkpoints (0 = at every validation).")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option("--log-every", min=1, help="Steps per metrics.jsonl record. [default: 10]")
    ] = None,
    stop_at: Annotated[
        int | None, typer.Option("--stop-at", min=1, help="Stop after this step as an interruption would (resumable).")
    ] = None,
    resize: Annotated[
        bool | None, typer.Option("--resize", help="Resize images of another size instead of failing.")
    ] = None,
    device: Annotated[Device | None, typer.Option("--device", help="auto = cuda if available, else cpu.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a VQGAN (stage 1): L1+L2 reconstruction, EMA codebook with dead-code restarts, optional PatchGAN.

    Writes runs/NAME/: last.safetensors and best.safetensors (by validation PSNR; load them with --vqgan),
    state.safetensors (exact --resume), metrics.jsonl, curves.png and config.json. Ctrl-C (or SIGTERM) finishes
    the step, saves and exits 130 (143); --resume RUN then continues bit for bit (on CPU). --max-steps/--epochs
    may be changed when resuming (the LR schedule follows the new length).

    [bold]Example[/bold]: maskgit train-vqgan data/emoji64/train --val data/emoji64/test -o runs/vqgan-emoji64 --preset small --max-steps 6000
    """
    from maskgit_cli.vqgan.train import TrainVQGANConfig, train_vqgan

    given = _given(
        preset=preset,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        seed=seed,
        precision=precision,
        gan_start=gan_start,
        gan_weight=gan_weight,
        flip=flip,
        eval_every=eval_every,
        save_every=save_every,
        log_every=log_every,
        stop_at=stop_at,
        device=device,
        resize=resize,
    )
    if resume is not None:
        output, saved = _resumed_run(resume, output)
        images = images or Path(saved["data"]["train_dir"])
        val = val or (Path(saved["data"]["val_dir"]) if saved["data"].get("val_dir") else None)
        cfg = TrainVQGANConfig(**{**saved["train"], "stop_at": None, **given})
    else:
        if "max_steps" in given and "epochs" not in given:
            given["epochs"] = None  # --max-steps alone sets the length
        cfg = TrainVQGANConfig(**given)
    if images is None or output is None:
        raise MaskgitError("give the training images and -o runs/NAME, or --resume RUN")
    s = train_vqgan(images, val, output, cfg, resume=resume is not None)
    if as_json:
        _print_json(s)
    else:
        _out(f"{s['status']} at step {s['step']}/{s['total_steps']} in {s['seconds']:.0f} s: {s['run']}")
        if s["val"]:
            v = s["val"]
            _out(
                f"last validation: PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.4f}, codebook usage {v['usage']:.1%}, "
                f"perplexity {v['perplexity']:.1f}; best PSNR {s['best_psnr']:.2f} dB at step {s['best_step']}"
            )
        if s["weights"]:
            _out(f"weights: {s['weights']}")
    if s["exit_code"]:
        raise typer.Exit(s["exit_code"])


@command("reconstruct", rich_help_panel="Stage 1: VQGAN (images <-> 16x16 tokens)")
def reconstruct_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of images to reconstruct.")],
    vqgan: Annotated[Path, typer.Option("--vqgan", help="VQGAN weights (.safetensors).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the reconstructions (same file names).")],
    grid: Annotated[
        Path | None, typer.Option("--grid", help="Originals | reconstructions grid PNG (default: OUTPUT-grid.png).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per VQGAN batch.")] = 64,
    precision: Annotated[
        Precision, typer.Option("--precision", help="fp32 (exact scores) or bf16 autocast (faster).")
    ] = Precision.fp32,
    resize: Annotated[bool, typer.Option("--resize", help="Resize images of another size instead of failing.")] = False,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Encode and decode images with a VQGAN; write each reconstruction under its own name and report mean
    PSNR/SSIM and the fraction of codebook codes used.

    [bold]Example[/bold]: maskgit reconstruct data/emoji64/test --vqgan weights/vqgan-emoji64.safetensors -o out/recon --json
    """
    from maskgit_cli.vqgan.reconstruct import format_summary, reconstruct_folder

    dev = _device(device)
    s = reconstruct_folder(
        images,
        _load(vqgan, "vqgan", dev),
        output,
        batch_size=batch_size,
        device=dev,
        precision=precision.value,
        resize=resize,
        grid_path=grid,
    )
    if as_json:
        _print_json(s)
    else:
        _out(format_summary(s))


@command("tokenize", rich_help_panel="Stage 1: VQGAN (images <-> 16x16 tokens)")
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
    from maskgit_cli.vqgan.tokens import tokenize_folder

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


# ----------------------------------------------------------------------------------------------------------
# Stage 2: the transformer (masked visual token modeling)


@command("train", rich_help_panel="Stage 2: transformer (masked visual token modeling)")
def train_cmd(
    train_tokens: Annotated[
        Path | None,
        typer.Argument(help="Training token cache (from `maskgit tokenize`; taken from the run when resuming)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Run folder: last/best.safetensors, state.safetensors, metrics.jsonl, curves.png."
        ),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option("--val", help="Validation token cache (same VQGAN): loss and masked-token accuracy every epoch."),
    ] = None,
    val_masks: Annotated[
        Path | None,
        typer.Option(
            "--val-masks",
            help="Lab-format masks for the --val images: also report accuracy under real inpainting masks (picks best.safetensors).",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue the run in this folder exactly where it stopped (settings come from the run)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file of settings (top level or [train]); options given here win."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Model size: tiny, small (2-core CPU), base (GPU, 26M), lab (the lab's 72.7M). [default: small]",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs (passes over the token grids). [default: 40]")
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps (whichever comes first)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Global batch (split across torchrun processes). [default: 64]"),
    ] = None,
    accum_grad: Annotated[
        int | None, typer.Option("--accum-grad", min=1, help="Micro-batches per optimizer step. [default: 1]")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", min=0.0, help="Peak learning rate (AdamW, warmup then cosine decay). [default: 4e-4]"),
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option("--warmup-steps", min=0, help="Linear warmup steps. [default: 200]")
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option("--weight-decay", min=0.0, help="AdamW decay on matrices and embeddings only. [default: 0.05]"),
    ] = None,
    grad_clip: Annotated[
        float | None, typer.Option("--grad-clip", min=0.0, help="Max gradient norm, 0 = off. [default: 1.0]")
    ] = None,
    mask_ratio: Annotated[
        str | None,
        typer.Option(
            "--mask-ratio",
            help="cosine (paper: r~U[0,1), ceil(gamma(r)*N) masked; any schedule name) or uniform:a,b (the lab seed's). [default: cosine]",
        ),
    ] = None,
    loss_on: Annotated[
        str | None, typer.Option("--loss-on", help="masked (paper) or all positions. [default: masked]")
    ] = None,
    label_smoothing: Annotated[
        float | None, typer.Option("--label-smoothing", min=0.0, max=1.0, help="[default: 0.1]")
    ] = None,
    precision: Annotated[
        Precision | None, typer.Option("--precision", help="bf16 autocast (CUDA and CPU) or fp32. [default: bf16]")
    ] = None,
    compile: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model. [default: no]")
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            "--ema",
            min=0.0,
            max=0.99999,
            help="EMA decay of the weights (e.g. 0.999); 0 = off. Exported weights are the EMA.",
        ),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", min=0, help="Steps between validations; 0 = every epoch.")
    ] = None,
    stop_at: Annotated[
        int | None,
        typer.Option("--stop-at", min=1, help="Stop after step N exactly as an interruption would (resume later)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the initial weights, data order and masks. [default: 0]")
    ] = None,
    device: Annotated[Device | None, typer.Option("--device", help="auto = cuda if available, else cpu.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the bidirectional transformer by masked visual token modeling on cached tokens.

    Each epoch: validation loss and masked-token accuracy; curves.png; best.safetensors (loadable by
    `maskgit inpaint`). Ctrl-C / SIGTERM saves a resumable checkpoint (exit 130 / 143); --resume continues
    with the same data order, LR schedule and random streams, ending bit-identical to an uninterrupted run
    on CPU. A NaN loss stops with the last good checkpoint kept.

    [bold]Example[/bold]: maskgit train runs/train.tokens --val runs/test.tokens --val-masks data/emoji64/mask64 -o runs/maskgit --preset small --epochs 20

    [bold]Several GPUs[/bold]: torchrun --nproc-per-node 4 -m maskgit_cli train runs/train.tokens -o runs/big --preset base
    """
    from maskgit_cli.transformer.train import TrainConfig, load_toml_config, train_transformer

    given = _given(
        preset=preset,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        accum_grad=accum_grad,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        mask_ratio=mask_ratio,
        loss_on=loss_on,
        label_smoothing=label_smoothing,
        precision=precision,
        compile=compile,
        ema=ema,
        eval_every=eval_every,
        stop_at=stop_at,
        seed=seed,
        device=device,
    )
    if resume is not None:
        output, saved = _resumed_run(resume, output)
        train_tokens = train_tokens or Path(saved["data"]["train"])
        val = val or (Path(saved["data"]["val"]) if saved["data"].get("val") else None)
        val_masks = val_masks or (Path(saved["data"]["val_masks"]) if saved["data"].get("val_masks") else None)
        cfg = TrainConfig(**{**saved["train"], "stop_at": None, **given})
    elif config is not None:
        cfg = load_toml_config(config, given)
    else:
        if "max_steps" in given and "epochs" not in given:
            given["epochs"] = None  # --max-steps alone sets the length
        cfg = TrainConfig(**given)
    if train_tokens is None:
        raise MaskgitError("give the training token cache (TRAIN_TOKENS), or --resume RUN")
    if output is None:
        raise MaskgitError("give the run folder with -o runs/NAME")
    summary = train_transformer(train_tokens, val, output, cfg, resume=resume is not None, val_masks_dir=val_masks)
    if summary.get("world_size", 1) > 1 and summary.get("rank", 0) != 0:
        return
    if as_json:
        _print_json(summary)
    else:
        best = (
            f", best val {summary['best_metric']} {summary['best']:.4f} at step {summary['best_step']}"
            if summary["best"] is not None
            else ""
        )
        _out(
            f"{summary['status']} at step {summary['step']}/{summary['total_steps']} in {summary['seconds']:.0f} s{best}; "
            f"weights: {summary['weights']}"
        )
    if summary["exit_code"]:
        raise typer.Exit(summary["exit_code"])


@command("convert-transformer", rich_help_panel="Stage 2: transformer (masked visual token modeling)")
def convert_transformer_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A lab student's transformer checkpoint (.pt state_dict).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .safetensors file.")],
    heads: Annotated[
        int, typer.Option("--heads", min=1, help="Attention heads (cannot be read from the weights).")
    ] = 16,
    qkv_order: Annotated[
        str,
        typer.Option(
            "--qkv-order",
            help="Row order of a fused qkv weight: qkv ([q; k; v], the usual) or per_head ([q_h, k_h, v_h] per head).",
        ),
    ] = "qkv",
    tokens: Annotated[
        Path | None,
        typer.Option(
            "--tokens",
            help="Token cache of the training images (`maskgit tokenize`): stores every code's mean pixel patch "
            "for known-pixel guidance (without it, inpaint decodes the patches from the VQGAN).",
        ),
    ] = None,
) -> None:
    """Import a lab student's transformer into our lab preset (post-LN, 768 x 15, 72.7M parameters).

    Maps the common attention layouts (qkv + proj, q/k/v + out_proj, query/key/value + proj, nn.MultiheadAttention,
    per-head ModuleLists); anything unmapped is listed in the error.

    [bold]Example[/bold]: maskgit convert-transformer checkpoints/epoch_best.pt -o lab-transformer.safetensors --tokens cats-train.tokens
    """
    from maskgit_cli.transformer.lab_import import load_lab_checkpoint
    from maskgit_cli.vqgan.code_patches import stored_with
    from maskgit_cli.vqgan.tokens import load_token_cache
    from maskgit_cli.weights import save_model

    if qkv_order not in ("qkv", "per_head"):
        raise MaskgitError(f"--qkv-order {qkv_order}: expected qkv or per_head")
    aux, meta = {}, {}
    if tokens is not None:
        cache = load_token_cache(tokens)
        if cache.patch_stats is None:
            raise MaskgitError(f"--tokens {tokens}: has no code patches (made by an older maskgit): re-run tokenize")
        aux, meta = stored_with(cache)
    model = load_lab_checkpoint(checkpoint, fused_qkv_order=qkv_order, n_heads=heads)
    if tokens is not None and cache.num_codebook_vectors != model.config.num_codebook_vectors:
        raise MaskgitError(
            f"--tokens {tokens}: {cache.num_codebook_vectors} codes, but the checkpoint predicts "
            f"{model.config.num_codebook_vectors}"
        )
    save_model(output, model, "transformer", meta, aux)
    _out(f"wrote {output} ({model.num_params():,} parameters{', with code patches' if aux else ''})")


# ----------------------------------------------------------------------------------------------------------
# Inpainting and scores


DecodePrecisionOpt = Annotated[
    AutoPrecision,
    typer.Option(
        "--precision",
        help="The transformer's autocast: bf16 (CUDA and CPU: about 2x faster than fp32 on a CPU too), fp32, or "
        "auto (bf16 on CUDA, fp32 on CPU). Batching does not change the decoded tokens in either (tested on CPU).",
    ),
]
PixelGuidanceOpt = Annotated[
    float,
    typer.Option(
        "--pixel-guidance",
        min=0.0,
        help="Let the known pixels inside each regenerated token weigh in on its code: logits -= W * squared "
        "distance (RGB in [0,1]) between those pixels and each code's mean patch (stored by `maskgit train`, "
        "else decoded from the VQGAN). 0 = off, the lab's decoding.",
    ),
]


@command("inpaint", rich_help_panel="Inpainting and scores")
def inpaint_cmd(
    images: Annotated[Path, typer.Option("--images", help="Folder of (masked) images, e.g. the lab's masked_image/.")],
    transformer: Annotated[Path, typer.Option("--transformer", help="Transformer weights (.safetensors).")],
    vqgan: Annotated[
        Path, typer.Option("--vqgan", help="VQGAN weights (.safetensors) the transformer was trained on.")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output folder: images/, steps/, overview.png, report.json.")
    ],
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks", help="Lab-format masks (0 = hole, 255 = known), paired with the images in sorted name order."
        ),
    ] = None,
    mask_kind: Annotated[
        MaskKind | None,
        typer.Option("--mask-kind", help="Instead of --masks: generate masks of this kind for any image folder."),
    ] = None,
    mask_seed: Annotated[int, typer.Option("--mask-seed", min=0, help="Seed of the generated masks.")] = 0,
    schedule: Annotated[
        Schedule,
        typer.Option("--schedule", help="Mask schedule gamma(r) (official formulas; logarithm = the official 'log')."),
    ] = Schedule.cosine,
    total_iter: Annotated[
        int, typer.Option("--total-iter", min=1, help="T: the schedule's number of steps, r = (t+1)/T.")
    ] = 8,
    sweet_spot: Annotated[
        int | None,
        typer.Option(
            "--sweet-spot",
            min=1,
            help="Steps actually run (the lab's meaning; default T). After the last one every still-masked token is filled.",
        ),
    ] = None,
    choice_temperature: Annotated[
        float,
        typer.Option("--choice-temperature", min=0.0, help="Gumbel noise on the confidences, annealed by (1 - r)."),
    ] = 4.5,
    sampling: Annotated[
        Sampling, typer.Option("--sampling", help="sample (official) or argmax (the lab's choice).")
    ] = Sampling.sample,
    token_mask: Annotated[
        TokenRule,
        typer.Option(
            "--token-mask",
            help="Pixel -> token rule: any (the lab's: a token is regenerated if any of its pixels is a hole) or majority.",
        ),
    ] = TokenRule.any,
    dilate: Annotated[
        int,
        typer.Option(
            "--dilate",
            min=0,
            help="Also regenerate K rings of tokens around the holes (they were encoded from the gray fill). 0 = the lab's rule.",
        ),
    ] = 1,
    pixel_guidance: PixelGuidanceOpt = 50.0,
    precision: DecodePrecisionOpt = AutoPrecision.bf16,
    composite: Annotated[
        bool,
        typer.Option(
            "--composite/--no-composite",
            help="Paste the known input pixels back over the result. The lab's FID numbers were made without compositing.",
        ),
    ] = True,
    grids: Annotated[
        str,
        typer.Option("--grids", help="Per-step mask and image grids for: all, none, the first N, or indices i,j,k."),
    ] = "8",
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Images decoded together: the tokens do not depend on it (a pixel may round one level differently in the VQGAN).",
        ),
    ] = 64,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Inpaint masked images: encode, fill the masked tokens iteratively under a mask schedule, decode.

    Writes OUT/images/<name>.png (the folder FID reads), per-step grids OUT/steps/<name>_mask.png (white =
    known, black = still masked) and OUT/steps/<name>_image.png (input, each step, final), OUT/overview.png
    (input | result) and OUT/report.json (settings and per-image still-masked counts after every step).

    [bold]Example[/bold]: maskgit inpaint --images data/emoji64/masked_image --masks data/emoji64/mask64 --transformer weights/maskgit-emoji64.safetensors --vqgan weights/vqgan-emoji64.safetensors -o runs/inpaint --schedule square

    [bold]Any image folder[/bold]: maskgit inpaint --images photos --mask-kind box --transformer T --vqgan V -o out
    """
    from maskgit_cli.decoding.decode import DecodeSettings
    from maskgit_cli.decoding.inpaint import InpaintSettings, inpaint_folder
    from maskgit_cli.vqgan.code_patches import read_code_patches

    settings = InpaintSettings(
        decode=DecodeSettings(schedule.value, total_iter, sweet_spot, choice_temperature, sampling.value, seed),
        token_mask=token_mask.value,
        dilate=dilate,
        composite=composite,
        precision=precision.value,
        pixel_guidance=pixel_guidance,
    )
    dev = _device(device)
    s = inpaint_folder(
        _load(transformer, "transformer", dev),
        _load(vqgan, "vqgan", dev),
        images,
        output,
        settings,
        masks_dir=masks,
        mask_kind=mask_kind.value if mask_kind else None,
        mask_seed=mask_seed,
        grids=grids,
        batch_size=batch_size,
        device=dev,
        num_workers=None,
        code_patches=read_code_patches(transformer) if pixel_guidance > 0 else None,
    )
    if as_json:
        _print_json(
            {
                "output": s.output,
                "images": s.images,
                "seconds": s.seconds,
                "images_per_second": s.images_per_second,
                "mean_still_masked": s.mean_still_masked,
            }
        )
        return
    counts = ", ".join(f"{c:.1f}" for c in s.mean_still_masked)
    _out(
        f"inpainted {s.images} images into {s.output}/images ({s.images_per_second:.1f} img/s); "
        f"mean still-masked tokens after each step: {counts}"
    )
    _out(f"grids: {s.output}/steps/, overview: {s.output}/overview.png, report: {s.output}/report.json")


@command("sweep", rich_help_panel="Inpainting and scores")
def sweep_cmd(
    images: Annotated[Path, typer.Option("--images", help="Folder of (masked) images, e.g. the lab's masked_image/.")],
    ref: Annotated[
        Path,
        typer.Option(
            "--ref",
            help="Ground truth: a folder of images (sorted name order) or the lab's test_gt.csv; a .npz from "
            "`maskgit fid-stats` works for FID only.",
        ),
    ],
    transformer: Annotated[Path, typer.Option("--transformer", help="Transformer weights (.safetensors).")],
    vqgan: Annotated[Path, typer.Option("--vqgan", help="VQGAN weights (.safetensors).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder: sweep.csv, sweep.png, sweep.json.")],
    masks: Annotated[
        Path | None, typer.Option("--masks", help="Lab-format masks (0 = hole), paired in sorted name order.")
    ] = None,
    mask_kind: Annotated[
        MaskKind | None, typer.Option("--mask-kind", help="Instead of --masks: generate masks of this kind.")
    ] = None,
    mask_seed: Annotated[int, typer.Option("--mask-seed", min=0, help="Seed of the generated masks.")] = 0,
    schedules: Annotated[
        str | None,
        typer.Option("--schedules", help="Comma-separated schedules, e.g. cosine,linear,square (default: all 8)."),
    ] = None,
    total_iters: Annotated[
        str, typer.Option("--total-iter", help="Comma-separated T values (r = (t+1)/T), e.g. 4,8,12.")
    ] = "8",
    sweet_spots: Annotated[
        str | None,
        typer.Option(
            "--sweet-spot",
            help="Comma-separated numbers of steps actually run, e.g. 1,2,3 (default: T, all steps); S > T is skipped.",
        ),
    ] = None,
    metric: Annotated[
        SweepMetric,
        typer.Option(
            "--metric",
            help="auto = FID when the Inception weights are on disk, else PSNR/SSIM over the holes; fid = require "
            "FID; psnr = PSNR/SSIM only.",
        ),
    ] = SweepMetric.auto,
    fid_mode: Annotated[
        FidMode,
        typer.Option(
            "--fid-mode",
            help="clean (default) or legacy_pytorch (pytorch-fid's network: comparable to the lab's FID numbers).",
        ),
    ] = FidMode.clean,
    kid: Annotated[bool, typer.Option("--kid", help="Also compute KID in every cell (needs FID).")] = False,
    inception: InceptionOpt = None,
    choice_temperature: Annotated[
        float,
        typer.Option("--choice-temperature", min=0.0, help="Gumbel noise on the confidences, annealed by (1 - r)."),
    ] = 4.5,
    sampling: Annotated[
        Sampling, typer.Option("--sampling", help="sample (official) or argmax (the lab's choice).")
    ] = Sampling.sample,
    token_mask: Annotated[
        TokenRule, typer.Option("--token-mask", help="Pixel -> token rule: any (the lab's) or majority.")
    ] = TokenRule.any,
    dilate: Annotated[
        int, typer.Option("--dilate", min=0, help="Also regenerate K rings of tokens around the holes.")
    ] = 1,
    pixel_guidance: PixelGuidanceOpt = 50.0,
    precision: DecodePrecisionOpt = AutoPrecision.bf16,
    composite: Annotated[
        bool,
        typer.Option(
            "--composite/--no-composite",
            help="Paste the known input pixels back. The lab's FID numbers were made without compositing.",
        ),
    ] = True,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Images decoded together: the tokens do not depend on it (a pixel may round one level differently in the VQGAN).",
        ),
    ] = 64,
    save_images: Annotated[
        bool, typer.Option("--save-images", help="Also write every cell's images to OUT/images/<cell>/.")
    ] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Find the best mask schedule, T and sweet spot: inpaint a test set over a grid and score every cell.

    The models are loaded once and the inputs VQGAN-encoded once; each cell (schedule, T, S <= T) runs the
    iterative decoding and is scored at once: FID (and KID) when the Inception weights are on disk, otherwise
    PSNR/SSIM over the hole pixels and whole images against --ref (the output says which and why). Best = lowest
    FID, else highest hole PSNR. Writes OUT/sweep.csv (one row per cell), OUT/sweep.png and OUT/sweep.json, and
    prints a table and the best setting as a ready-to-run `maskgit inpaint` line.

    [bold]Example[/bold]: maskgit sweep --images data/emoji64/masked_image --masks data/emoji64/mask64 --ref data/emoji64/test --transformer weights/maskgit-emoji64.safetensors --vqgan weights/vqgan-emoji64.safetensors -o runs/sweep --total-iter 4,8 --sweet-spot 2,3,4,8
    """
    from maskgit_cli.decoding.decode import DecodeSettings
    from maskgit_cli.decoding.inpaint import InpaintSettings
    from maskgit_cli.evaluation.sweep import parse_int_list, parse_schedules, run_sweep
    from maskgit_cli.evaluation.sweep_report import best_line, render_table, result_dict

    names = parse_schedules(schedules)
    ts = parse_int_list(total_iters, "--total-iter", "4,8,12")
    ss = parse_int_list(sweet_spots, "--sweet-spot", "1,2,3")
    settings = InpaintSettings(
        decode=DecodeSettings(names[0], max(ts), None, choice_temperature, sampling.value, seed),
        token_mask=token_mask.value,
        dilate=dilate,
        composite=composite,
        precision=precision.value,
        pixel_guidance=pixel_guidance,
    )
    r = run_sweep(
        transformer,
        vqgan,
        images,
        ref,
        output,
        masks_dir=masks,
        mask_kind=mask_kind.value if mask_kind else None,
        mask_seed=mask_seed,
        schedules=names,
        total_iters=ts,
        sweet_spots=ss,
        settings=settings,
        metric=metric.value,
        fid_mode=fid_mode.value,
        kid=kid,
        inception=inception,
        device=_device(device),
        batch_size=batch_size,
        save_images=save_images,
    )
    if as_json:
        _print_json(result_dict(r))
        return
    from rich.console import Console

    render_table(r, Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120))
    _out(r.metric_note)
    _out(best_line(r))
    _out(f"run it: {r.command}")
    _out(f"wrote {', '.join(r.files.values())}")


@command("fid", rich_help_panel="Inpainting and scores")
def fid_cmd(
    pred: Annotated[Path, typer.Argument(help="Folder of generated/inpainted images (e.g. OUT/images).")],
    ref: Annotated[
        Path,
        typer.Argument(
            help="Reference: a folder of images, a .npz from `maskgit fid-stats`, or the lab's test_gt.csv."
        ),
    ],
    mode: FidModeOpt = FidMode.clean,
    kid: Annotated[bool, typer.Option("--kid", help="Also compute KID (kernel inception distance).")] = False,
    inception: InceptionOpt = None,
    batch_size: FidBatchOpt = 32,
    workers: FidWorkersOpt = None,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Frechet Inception Distance of PRED against REF, with clean-fid underneath.

    To compare with the lab's reported FIDs use [bold]--mode legacy_pytorch[/bold] (the pytorch-fid network the lab
    used) against test_gt.csv; the lab's FID used no compositing: it scored the decoded images as they are,
    known pixels included (run `maskgit inpaint --no-composite` to match). Image counts may differ (a warning);
    image sizes may not. Inception weights come from --inception, $MASKGIT_INCEPTION, clean-fid's cache or a
    download; offline without the file, the error says which file to put where. MASKGIT_NO_DOWNLOAD=1 never downloads.

    [bold]Example[/bold]: maskgit fid runs/inpaint/images test_gt.csv --mode legacy_pytorch --kid
    """
    from maskgit_cli.evaluation.fid import compute_fid

    r = compute_fid(
        pred,
        ref,
        mode=mode.value,
        device=device.value,
        batch_size=batch_size,
        num_workers=workers,
        kid=kid,
        inception=inception,
    )
    if as_json:
        _print_json(r)
        return
    h, w = r["image_size"]
    _out(
        f"FID {r['fid']:.4f}  (mode {r['mode']}, {r['pred_count']} PRED vs {r['ref_count'] or '?'} REF images "
        f"of {w}x{h}, REF {r['ref_kind']})"
    )
    if kid:
        _out(f"KID {r['kid']:.6f}")
    _out(f"features: {r['feature_extractor']} ({r['feature_dim']}-d), weights: {r['weights']}")


@command("fid-stats", rich_help_panel="Inpainting and scores")
def fid_stats_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of reference images (or the lab's test_gt.csv).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Statistics file to write, e.g. ref.npz.")],
    mode: FidModeOpt = FidMode.clean,
    features: Annotated[
        bool, typer.Option("--features/--no-features", help="Store the features too (needed for --kid).")
    ] = True,
    inception: InceptionOpt = None,
    batch_size: FidBatchOpt = 32,
    workers: FidWorkersOpt = None,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Precompute a reference's FID statistics (mu, sigma, count, mode, extractor, image size) for `maskgit fid`.

    `maskgit fid PRED ref.npz` then gives the same number as `maskgit fid PRED DIR`, without re-reading DIR.
    A file is only usable with the --mode it was made with.

    [bold]Example[/bold]: maskgit fid-stats data/emoji64/test -o runs/emoji64-test.npz
    """
    from maskgit_cli.evaluation.fid import make_stats

    r = make_stats(
        images,
        output,
        mode=mode.value,
        device=device.value,
        batch_size=batch_size,
        num_workers=workers,
        inception=inception,
        save_features=features,
    )
    if as_json:
        _print_json(r)
        return
    h, w = r["image_size"]
    _out(
        f"wrote {r['path']}: {r['count']} images of {w}x{h}, mode {r['mode']}, {r['feature_extractor']} "
        f"({r['feature_dim']}-d){'' if features else ', no features (no KID)'}"
    )


@command("score", rich_help_panel="Inpainting and scores")
def score_cmd(
    pred: Annotated[Path, typer.Argument(help="Folder of inpainted images.")],
    ref: Annotated[Path, typer.Argument(help="Folder of ground-truth images, or the lab's test_gt.csv.")],
    masks: Annotated[
        Path | None, typer.Option("--masks", help="Lab-format masks (0 = hole): also score the hole pixels only.")
    ] = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Also print one line per image.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """PSNR and SSIM (scikit-image) of PRED against REF, whole images and, with --masks, hole pixels only.

    Images, references and masks pair up in sorted file-name order; counts and sizes must match. Works offline
    (no Inception needed). In --json, null stands for an infinite PSNR (identical images) or a mask without holes.

    [bold]Example[/bold]: maskgit score runs/inpaint/images data/emoji64/test --masks data/emoji64/mask64 --json
    """
    from maskgit_cli.evaluation.score import finite_or_none, score_folders

    r = score_folders(pred, ref, masks)
    if as_json:
        if not per_image:
            r = {k: v for k, v in r.items() if k != "images"}
        _print_json(finite_or_none(r))
        return
    if per_image:
        hole = masks is not None
        _out(
            f"{'image':<24} {'PSNR':>8} {'SSIM':>7}"
            + (f" {'PSNR hole':>10} {'SSIM hole':>10} {'hole':>6}" if hole else "")
        )
        for row in r["images"]:
            line = f"{row['pred']:<24} {row['psnr']:>8.3f} {row['ssim']:>7.4f}"
            if hole:
                line += f" {row['psnr_hole']:>10.3f} {row['ssim_hole']:>10.4f} {row['hole_fraction']:>6.1%}"
            _out(line)
    _out(f"{r['count']} image pairs: PSNR {r['psnr']:.3f} dB, SSIM {r['ssim']:.4f} (whole images)")
    if masks is not None:
        _out(
            f"holes only: PSNR {r['psnr_hole']:.3f} dB, SSIM {r['ssim_hole']:.4f} "
            f"({r['images_with_holes']} images with holes, mean hole {r['hole_fraction']:.1%} of the pixels)"
        )


# ----------------------------------------------------------------------------------------------------------
# Files and speed


@command("info", rich_help_panel="Files and speed")
def info_cmd(
    file: Annotated[Path, typer.Argument(help="A maskgit weights (.safetensors) or token cache (.tokens) file.")],
    as_json: JsonOpt = False,
) -> None:
    """Show what a weights or token file holds: its kind, config and tensors.

    [bold]Example[/bold]: maskgit info weights/vqgan-emoji64.safetensors --json
    """
    from maskgit_cli.weights import describe

    info = describe(file)
    if as_json:
        _print_json(info)
        return
    _out(f"{info['path']}: kind={info['kind']} maskgit_version={info.get('maskgit_version')}")
    for key, value in info.items():
        if key in ("path", "kind", "maskgit_version", "tensors", "files"):
            continue
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        _out(f"  {key}: {text if len(text) <= 600 else f'({len(text):,} characters; see --json)'}")
    if "files" in info:
        files = info["files"]
        _out(f"  files: {len(files)} ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})")
    for t in info["tensors"][:20]:
        _out(f"  {t['name']:<50} {t['dtype']:<5} {tuple(t['shape'])}")
    if len(info["tensors"]) > 20:
        _out(f"  ... {len(info['tensors']) - 20} more tensors")


bench_app = typer.Typer(
    help="Speed benchmarks, reported as ratios measured in one run (achieved FLOP/s over the matmul peak).",
    no_args_is_help=True,
)


app.add_typer(bench_app, name="bench", rich_help_panel="Files and speed")


@command("train", group=bench_app)
def bench_train_cmd(
    preset: Annotated[str, typer.Option("--preset", help="Transformer preset: tiny, small, base or lab.")] = "small",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Default: 256 on CUDA, 32 on CPU.")
    ] = None,
    precision: Annotated[
        Precision, typer.Option("--precision", help="bf16 autocast (CUDA and CPU) or fp32.")
    ] = Precision.bf16,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Timed steps (default: 20 on CUDA, 5 on CPU).")
    ] = None,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Training throughput of a transformer preset: img/s, achieved TFLOP/s and MFU against the matmul peak
    measured in the same run, in the same precision.

    [bold]Example[/bold]: maskgit bench train --preset lab --device cuda --json
    """
    from maskgit_cli.bench import bench_train

    r = bench_train(preset, _device(device), batch_size, precision.value, compile, steps)
    if as_json:
        _print_json(r.to_dict())
        return
    _out(
        f"{r.preset} ({r.params / 1e6:.1f}M params) on {r.device}, batch {r.batch_size}, {r.precision}"
        f"{', compiled' if r.compile else ''}: {r.images_per_second:,.1f} img/s, {r.achieved_tflops:.3f} TFLOP/s "
        f"of a measured {r.peak_tflops:.3f} TFLOP/s matmul peak = {r.mfu:.1%} MFU"
    )


@command("inpaint", group=bench_app)
def bench_inpaint_cmd(
    preset: Annotated[str, typer.Option("--preset", help="Transformer preset.")] = "small",
    vqgan_preset: Annotated[
        str, typer.Option("--vqgan-preset", help="VQGAN preset (lab, base, small, tiny).")
    ] = "small",
    total_iter: Annotated[int, typer.Option("--total-iter", min=1, help="Decode steps T.")] = 8,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Default: 512 on CUDA, 32 on CPU.")
    ] = None,
    device: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Inpainting throughput (VQGAN encode, T decode steps, VQGAN decode) with random weights.

    [bold]Example[/bold]: maskgit bench inpaint --preset lab --vqgan-preset lab --total-iter 8 --json
    """
    from maskgit_cli.bench import bench_inpaint

    r = bench_inpaint(preset, vqgan_preset, _device(device), batch_size, total_iter)
    if as_json:
        _print_json(r.to_dict())
        return
    _out(
        f"{r.preset} + VQGAN {r.vqgan_preset} on {r.device}, batch {r.batch_size}, T={r.total_iter}, {r.precision}: "
        f"{r.images_per_second:,.1f} img/s end to end, {r.decode_only_images_per_second:,.1f} img/s token decoding only"
    )


def main() -> None:
    """Console-script entry point."""
    app(prog_name="maskgit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
