"""Stage 1 commands: convert-vqgan, train-vqgan, robust-vqgan, tune-decoder, reconstruct, tokenize."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli.cli.common import (
    LOOP,
    STAGE1,
    Device,
    DeviceOpt,
    JsonOpt,
    OptionGroup,
    Precision,
    ResumeOpt,
    VQGANPreset,
    command,
    default_help,
    device,
    floats3,
    given,
    loop_help,
    out,
    plain,
    print_json,
    shown_default,
    unset_option,
)
from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.resolution import DOWNSAMPLES, RESOLUTIONS
from maskgit_cli.vqgan.settings import RobustConfig, TrainVQGANConfig, TuneDecoderConfig, VQGANTrainSettings

VqganOpt = Annotated[Path, typer.Option("--vqgan", help="VQGAN weights (.safetensors).")]
ShippedVqganOpt = Annotated[
    Path | None,
    typer.Option(
        "--vqgan",
        help="VQGAN weights (.safetensors). "
        + shown_default("the shipped emoji64 VQGAN, the one `maskgit inpaint` uses"),
    ),
]


def vqgan_or_shipped(vqgan: Path | None) -> Path:
    """``--vqgan``, or the shipped VQGAN's file when it is left out."""
    from maskgit_cli.weights import default_weights

    return vqgan if vqgan is not None else default_weights("vqgan")


ResizeOpt = Annotated[bool, typer.Option("--resize", help="Resize images of another size instead of failing.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per VQGAN batch.")]
# The VQGAN trainers' inputs (None: not given, the run's own when resuming).
TrainImagesArg = Annotated[
    Path | None, typer.Argument(help="Folder of training images (taken from the run when resuming).")
]
TrainFlipOpt = Annotated[
    bool | None,
    typer.Option(
        "--flip/--no-flip",
        help="Random horizontal flips. " + default_help(VQGANTrainSettings, "flip", switch="--flip/--no-flip"),
    ),
]
TrainResizeOpt = Annotated[
    bool | None, typer.Option("--resize", help="Resize images of another size instead of failing.")
]


def _size_option(name: str, help: str):
    """One of train-vqgan's size options, ``--NAME`` (None: not given; the run's own when resuming)."""
    return Annotated[int | None, typer.Option(f"--{name}", help=f"{help} {default_help(TrainVQGANConfig, name)}")]


ResolutionOpt = _size_option(
    "resolution",
    f"Image side R: the VQGAN encodes R x R images ({', '.join(map(str, RESOLUTIONS))}); other sizes are refused, "
    "or resized with --resize.",
)
DownsampleOpt = _size_option(
    "downsample",
    f"Pixels f of a token's side ({', '.join(map(str, DOWNSAMPLES))}): the token grid is R/f x R/f (16x16 for 64x64 "
    "images at 4).",
)


def report_run(s: dict, as_json: bool, val_line) -> None:
    """A stage-1 trainer's summary ``s``: as JSON, or its status line, ``val_line(last validation)`` when it validated,
    and the weights it wrote; then exit with its code (130/143 after an interruption)."""
    if as_json:
        print_json(s)
    else:
        out(f"{s['status']} at step {s['step']}/{s['total_steps']} in {s['seconds']:.0f} s: {s['run']}")
        if s["val"]:
            out(val_line(s["val"]))
        if s["weights"]:
            out(f"weights: {s['weights']}")
    if s["exit_code"]:
        raise typer.Exit(s["exit_code"])


@command("convert-vqgan", STAGE1)
def convert_vqgan_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The lab's VQGAN.pt (a plain state_dict).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .safetensors file.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="The lab's VQGAN.yml. " + shown_default("the lab's architecture"))
    ] = None,
    mean: Annotated[
        str | None, typer.Option("--mean", help="Normalization mean R,G,B. " + shown_default("the lab's train mean"))
    ] = None,
    std: Annotated[
        str | None, typer.Option("--std", help="Normalization std R,G,B. " + shown_default("the lab's"))
    ] = None,
    test_mean: Annotated[
        str | None,
        typer.Option(
            "--test-mean",
            help="The lab's test-set mean R,G,B, used by --normalization test. " + shown_default("the lab's"),
        ),
    ] = None,
    test_std: Annotated[
        str | None, typer.Option("--test-std", help="The lab's test-set std R,G,B. " + shown_default("the lab's"))
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import the lab's VQGAN checkpoint into a self-describing safetensors file.

    Loads with torch.load(weights_only=True) and checks every key and shape; a mismatch lists the missing,
    unexpected and mis-shaped keys. The file records both of the lab's statistics: its train mean/std (used by
    default) and its test mean/std (used by `maskgit inpaint --lab` or --normalization test, as the lab's inference).

    [bold]Example[/bold]: maskgit convert-vqgan VQGAN.pt --config VQGAN.yml -o lab-vqgan.safetensors
    """
    from maskgit_cli.vqgan.lab_import import convert_lab_vqgan_file

    stats = [
        floats3(v, o)
        for v, o in ((mean, "--mean"), (std, "--std"), (test_mean, "--test-mean"), (test_std, "--test-std"))
    ]
    r = convert_lab_vqgan_file(checkpoint, output, config, *stats)
    if as_json:
        print_json(r)
        return
    out(f"wrote {r['output']} ({r['parameters']:,} parameters, fingerprint {r['vqgan_sha256'][:12]})")


@command("train-vqgan", STAGE1)
@LOOP.add(
    help=loop_help(
        TrainVQGANConfig,
        epochs="Epochs, unless --max-steps is given.",
        batch_size="Images per step.",
        lr="Peak learning rate (AdamW, warmup then cosine).",
        warmup_steps="Linear warmup steps.",
        seed="Seed of the initial weights, data order and flips.",
    )
)
def train_vqgan_cmd(
    images: TrainImagesArg = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Run folder, e.g. runs/vqgan-emoji64.")] = None,
    val: Annotated[
        Path | None, typer.Option("--val", help="Validation images: PSNR/SSIM/codebook usage; picks best.safetensors.")
    ] = None,
    resume: ResumeOpt = None,
    preset: Annotated[
        VQGANPreset | None,
        typer.Option(
            "--preset",
            help="VQGAN preset: local (each token encoded from its own f x f patch: holes change no other token; the default weights'), small (an image-wide encoder, as the lab's), base, lab, tiny. "
            + default_help(TrainVQGANConfig, "preset"),
        ),
    ] = None,
    resolution: ResolutionOpt = None,
    downsample: DownsampleOpt = None,
    gan_start: Annotated[
        int | None,
        typer.Option(
            "--gan-start",
            min=0,
            help="Add the PatchGAN loss from this step. " + default_help(TrainVQGANConfig, "gan_start", none="no GAN"),
        ),
    ] = None,
    gan_weight: Annotated[
        float | None,
        typer.Option(
            "--gan-weight", help="Weight of the adversarial loss. " + default_help(TrainVQGANConfig, "gan_weight")
        ),
    ] = None,
    flip: TrainFlipOpt = None,
    resize: TrainResizeOpt = None,
    loop: dict | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a VQGAN (stage 1): L1+L2 reconstruction, EMA codebook with dead-code restarts, optional PatchGAN.

    Writes runs/NAME/: last.safetensors and best.safetensors (by validation PSNR; load them with --vqgan),
    state.safetensors (exact --resume), metrics.jsonl, curves.png and config.json. Ctrl-C (or SIGTERM) finishes
    the step, saves and exits 130 (143); --resume RUN then continues bit for bit (on CPU). --max-steps/--epochs
    may be changed when resuming (the LR schedule follows the new length). --resolution R and --downsample f make a
    model at the resolution of the data: R x R images, R/f x R/f tokens (every later stage takes the grid from it).

    [bold]Example[/bold]: maskgit train-vqgan data/emoji64/train --val data/emoji64/val -o runs/vqgan-emoji64 --preset local --max-steps 4000
    """
    from maskgit_cli.training.run import resolve_run
    from maskgit_cli.vqgan.train import train_vqgan

    options = given(
        {
            **loop,
            "preset": plain(preset),
            "resolution": resolution,
            "downsample": downsample,
            "gan_start": gan_start,
            "gan_weight": gan_weight,
            "flip": flip,
            "resize": resize,
        }
    )
    run = resolve_run(
        TrainVQGANConfig,
        "train-vqgan",
        options,
        output=output,
        resume=resume,
        data={"train_dir": images, "val_dir": val},
    )
    if run.data["train_dir"] is None:
        raise MaskgitError("give the training images and -o runs/NAME, or --resume RUN")
    s = train_vqgan(run.data["train_dir"], run.data["val_dir"], run.output, run.config, resume=run.resume)
    report_run(
        s,
        as_json,
        lambda v: (
            f"last validation: PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.4f}, codebook usage {v['usage']:.1%}, "
            f"perplexity {v['perplexity']:.1f}; best PSNR {s['best_psnr']:.2f} dB at step {s['best_step']}"
        ),
    )


def weight_option(config, name: str, text: str):
    """The option of a loss weight, the field ``name`` of the settings class ``config`` (``--l1-weight`` for
    ``l1_weight``): a number >= 0, help ``text`` and its default."""
    flag = "--" + name.replace("_", "-")
    return unset_option(float, flag, min=0.0, help=f"{text} {default_help(config, name)}")


# The loop options' help of both fine-tuners (each adds its --lr's and may add others).
FINE_TUNE_LOOP = {
    "epochs": "Epochs.",
    "max_steps": "Fine-tuning steps.",
    "batch_size": "Images per step.",
    "warmup_steps": "Linear warmup steps.",
}


def fine_tuner(
    name: str, config, *, vqgan: str, run: str, val: str, options: dict, loop_texts: dict[str, str], val_line
):
    """Register ``name``, the command of a fine-tuner of a trained VQGAN (robust-vqgan, tune-decoder) whose settings
    class is ``config``: the training images, ``--vqgan`` (help ``vqgan``), ``-o`` (a run folder such as ``run``),
    ``--val`` (help ``val``), --resume, the trainer's own ``options`` (name: (annotated type, default), as an
    :class:`OptionGroup` takes them) and the loop's (help: :data:`FINE_TUNE_LOOP` and ``loop_texts``, with ``config``'s
    defaults), --json. It reports ``val_line(last validation, summary)``. The decorated function gives the
    command's help and returns the trainer's function.
    """
    loop_options_help = loop_help(config, **FINE_TUNE_LOOP, **loop_texts)
    inputs = OptionGroup(
        "inputs",
        {
            "vqgan": (Annotated[Path | None, typer.Option("--vqgan", help=vqgan)], None),
            "output": (Annotated[Path | None, typer.Option("-o", "--output", help=f"Run folder, e.g. {run}.")], None),
            "val": (Annotated[Path | None, typer.Option("--val", help=val)], None),
        },
    )

    def decorate(trainer):
        def cmd(
            images: TrainImagesArg = None,
            inputs: dict | None = None,
            resume: ResumeOpt = None,
            own: dict | None = None,
            loop: dict | None = None,
            as_json: JsonOpt = False,
        ) -> None:
            from maskgit_cli.training.run import resolve_run

            train = trainer()
            data = {"vqgan": inputs["vqgan"], "train_dir": images, "val_dir": inputs["val"]}
            settings = given({**loop, **own})
            r = resolve_run(config, name, settings, output=inputs["output"], resume=resume, data=data)
            if r.data["train_dir"] is None or r.data["vqgan"] is None:
                raise MaskgitError("give the training images, --vqgan FILE and -o runs/NAME, or --resume RUN")
            s = train(r.data["vqgan"], r.data["train_dir"], r.data["val_dir"], r.output, r.config, resume=r.resume)
            report_run(s, as_json, lambda v: val_line(v, s))

        cmd.__doc__ = trainer.__doc__
        command(name, STAGE1)(LOOP.add(help=loop_options_help)(OptionGroup("own", options).add()(inputs.add()(cmd))))
        return trainer

    return decorate


@fine_tuner(
    "robust-vqgan",
    RobustConfig,
    vqgan="The trained VQGAN to make mask-robust (taken from the run).",
    run="runs/vqgan-robust",
    val="Validation images: context fidelity, clean tokens kept, PSNR; picks best.",
    options={
        "hole_blind": unset_option(
            bool,
            "--hole-blind/--no-hole-blind",
            help="Encode images with holes with normalization and attention over the known pixels only "
            "(recorded in the VQGAN; inpaint then encodes that way). "
            + default_help(RobustConfig, "hole_blind", switch="--hole-blind/--no-hole-blind"),
        ),
        "masked_weight": weight_option(RobustConfig, "masked_weight", "Weight of the masked-context term."),
    },
    loop_texts={"lr": "Peak learning rate of the encoder."},
    val_line=lambda v, s: (
        f"last validation: context fidelity {v['fidelity']:.1%}, clean tokens kept {v['clean_kept']:.1%}, "
        f"PSNR {v['psnr']:.2f} dB; best fidelity {s['best_fidelity']:.1%} at step {s['best_step']}"
    ),
)
def robust_vqgan_cmd():
    """Make a VQGAN's tokens mask-robust: fine-tune its encoder so that filling holes changes no token outside the
    region inpainting regenerates (codebook and decoder frozen; clean images keep their tokens).

    Reports the context fidelity (share of the tokens outside the holes and their ring that equal the clean image's)
    at every validation; best.safetensors has the highest. Resumable like the other trainers.

    [bold]Example[/bold]: maskgit robust-vqgan data/emoji64/train --vqgan weights/vqgan-emoji64.safetensors --val data/emoji64/val -o runs/vqgan-robust
    """
    from maskgit_cli.vqgan.robust import robust_vqgan

    return robust_vqgan


@fine_tuner(
    "tune-decoder",
    TuneDecoderConfig,
    vqgan="The trained VQGAN whose decoder to fine-tune (taken from the run).",
    run="runs/vqgan-decoder",
    val="Validation images: PSNR/SSIM; picks best.safetensors.",
    options={
        "l1_weight": weight_option(TuneDecoderConfig, "l1_weight", "Weight of the L1 pixel loss."),
        "l2_weight": weight_option(TuneDecoderConfig, "l2_weight", "Weight of the L2 pixel loss (what PSNR measures)."),
        "flip": (TrainFlipOpt, None),
        "resize": (TrainResizeOpt, None),
    },
    loop_texts={"lr": "Peak learning rate of the decoder.", "seed": "Seed of the data order and flips."},
    val_line=lambda v, s: (
        f"last validation: PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.4f}; best PSNR {s['best_psnr']:.2f} dB "
        f"at step {s['best_step']} (the source VQGAN: {s['source_psnr']:.2f} dB)"
    ),
)
def tune_decoder_cmd():
    """Sharpen a VQGAN's reconstructions without changing its tokens: fine-tune the decoder alone (encoder and
    codebook frozen), so token caches and transformers trained on the VQGAN stay valid with the new file.

    The new VQGAN records its source's token fingerprint: inpaint and tokenize accept it wherever the source was
    expected. best.safetensors has the best validation PSNR. Resumable like the other trainers.

    [bold]Example[/bold]: maskgit tune-decoder data/emoji64/train --vqgan weights/vqgan-emoji64.safetensors --val data/emoji64/val -o runs/vqgan-decoder
    """
    from maskgit_cli.vqgan.tune_decoder import tune_decoder

    return tune_decoder


@command("reconstruct", STAGE1)
def reconstruct_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of images to reconstruct.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the reconstructions (same file names).")],
    vqgan: ShippedVqganOpt = None,
    grid: Annotated[
        Path | None,
        typer.Option("--grid", help="Originals | reconstructions grid PNG. " + shown_default("OUTPUT-grid.png")),
    ] = None,
    batch_size: BatchOpt = 64,
    precision: Annotated[
        Precision, typer.Option("--precision", help="fp32 (exact scores) or bf16 autocast (faster).")
    ] = Precision.fp32,
    resize: ResizeOpt = False,
    mask_seed: Annotated[
        int,
        typer.Option("--mask-seed", min=0, help="Seed of the generated holes the context fidelity is measured with."),
    ] = 0,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Encode and decode images with a VQGAN; write each reconstruction under its own name and report mean
    PSNR/SSIM, the fraction of codebook codes used, and the context fidelity: the share of tokens outside the
    region inpainting regenerates that stay the same when the image has holes (generated masks, one per image).

    [bold]Example[/bold]: maskgit reconstruct data/emoji64/test --vqgan weights/vqgan-emoji64.safetensors -o out/recon --json

    [bold]How the shipped VQGAN sees your images[/bold]: maskgit reconstruct photos -o out/recon --resize
    """
    from maskgit_cli.vqgan.reconstruct import format_summary, reconstruct_folder

    s = reconstruct_folder(
        images,
        vqgan_or_shipped(vqgan),
        output,
        batch_size=batch_size,
        device=device(device_name),
        precision=precision.value,
        resize=resize,
        grid_path=grid,
        mask_seed=mask_seed,
    )
    if as_json:
        print_json(s)
    else:
        out(format_summary(s))


@command("tokenize", STAGE1)
def tokenize_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of images (sorted file-name order is kept).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Token cache to write, e.g. train.tokens.")],
    vqgan: ShippedVqganOpt = None,
    flip: Annotated[
        bool, typer.Option("--flip", help="Also append the tokens of horizontally flipped images.")
    ] = False,
    batch_size: BatchOpt = 64,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip unreadable files (counted in the summary) instead of failing.")
    ] = False,
    resize: ResizeOpt = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=0, help="Image decoding processes. " + shown_default("by core count"))
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing token cache.")] = False,
    masked_copies: Annotated[
        int,
        typer.Option(
            "--masked-copies",
            min=0,
            help="Also store K masked copies of every image (generated stroke/box holes filled gray, as inpainting "
            "fills them) for `train --copies-ratio`; prints the context fidelity (share of tokens outside the "
            "holes left unchanged).",
        ),
    ] = 0,
    mask_seed: Annotated[int, typer.Option("--mask-seed", min=0, help="Seed of the masked copies' masks.")] = 0,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Encode an image folder into a cached token index file (N,h,w) for training: the VQGAN's token grid (16x16
    for 64x64 images).

    [bold]Example[/bold]: maskgit tokenize data/emoji64/train --vqgan weights/vqgan-emoji64.safetensors -o runs/train.tokens --flip
    """
    from dataclasses import asdict

    from maskgit_cli.vqgan.tokens import tokenize_folder

    s = tokenize_folder(
        images,
        vqgan_or_shipped(vqgan),
        output,
        batch_size=batch_size,
        device=device(device_name),
        flip=flip,
        skip_invalid=skip_invalid,
        resize=resize,
        num_workers=workers,
        overwrite=overwrite,
        masked_copies=masked_copies,
        mask_seed=mask_seed,
    )
    if s is None:  # another process of a torchrun: rank 0 wrote the cache and reports it
        return
    if as_json:
        print_json(asdict(s))
        return
    copies = f" + {s.masked_copies} masked copies each" if s.masked_copies else ""
    out(
        f"wrote {s.output}: {s.rows} token grids {s.grid[0]}x{s.grid[1]}{copies} from {s.images} images"
        f"{' (+ flips)' if flip else ''}, {len(s.skipped)} skipped, {s.images / max(s.seconds, 1e-9):.1f} img/s"
    )
    if s.context_fidelity is not None:
        out(f"context fidelity: {s.context_fidelity:.1%} of the tokens outside the regenerated region unchanged")
    for name in s.skipped[:10]:
        typer.echo(f"skipped: {name}", err=True)
