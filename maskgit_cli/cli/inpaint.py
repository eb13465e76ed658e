"""Inpainting commands: inpaint, sweep (both take the same decoding and input options), and sweep's comma lists."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli.choices import SAMPLERS, SCHEDULE_NAMES, SCHEDULES
from maskgit_cli.cli.common import (
    DECODE,
    INPAINT,
    INPUTS,
    STEPS,
    Animation,
    Device,
    DeviceOpt,
    FidMode,
    Fit,
    InceptionOpt,
    JsonOpt,
    Layout,
    SweepMetric,
    command,
    default_help,
    device,
    out,
    plain,
    print_json,
    shown_default,
)
from maskgit_cli.cli.option_checks import inpaint_settings
from maskgit_cli.decoding.settings import LAB_OUTPUT, DecodeSettings, OutputSettings
from maskgit_cli.errors import MaskgitError, OptionError, option_values
from maskgit_cli.model_card import model_weights

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="A model folder (`maskgit fit` makes one: vqgan.safetensors, transformer.safetensors, card.json) or a "
        "Hugging Face Hub id in the local cache, instead of --transformer and --vqgan.",
    ),
]


def weights_of(inputs: dict, model: str | None) -> tuple:
    """(transformer, vqgan) from --model or --transformer/--vqgan (both at once: one error line)."""
    return model_weights(model, inputs["transformer"], inputs["vqgan"])


def _inputs(inputs: dict) -> dict:
    """The input options as inpaint_folder/run_sweep take them (besides the images and the weights), once --images
    and --masks are known not to be one folder, nor swapped (:func:`maskgit_cli.data.masks.check_mask_folder`)."""
    from maskgit_cli.data.masks import check_mask_folder

    if inputs["masks"] is not None:
        check_mask_folder(inputs["images"], inputs["masks"])
    names = {"masks": "masks_dir", "mask_kind": "mask_kind", "mask_seed": "mask_seed", "any_vqgan": "any_vqgan",
             "overwrite": "overwrite"}  # fmt: skip
    return {ours: inputs[option] for option, ours in names.items()}


def _batch_size(settings) -> int:
    """--batch-size when not given: the lab's one image at a time with --lab, else OutputSettings'."""
    return LAB_OUTPUT["batch_size"] if settings.lab else OutputSettings.batch_size


@command("inpaint", INPAINT)
@INPUTS.add()
@STEPS.add()
@DECODE.add()
def inpaint_cmd(
    *,
    inputs: dict | None = None,
    model: ModelOpt = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output folder: images/, steps/, overview.png, report.json.")
    ],
    steps: dict | None = None,
    grids: Annotated[
        str | None,
        typer.Option(
            "--grids",
            help="Per-step mask and image grids for: all, none, the first N, or indices i,j,k. "
            + default_help(OutputSettings, "grids", LAB_OUTPUT),
        ),
    ] = None,
    layout: Annotated[
        Layout | None,
        typer.Option(
            "--layout",
            help="Output names: ours (images/NAME.png, steps/) or lab (test_results/image_000.png, "
            "mask_scheduling/test_0.png, imga/test_0.png). " + default_help(OutputSettings, "layout", LAB_OUTPUT),
        ),
    ] = None,
    animation: Annotated[
        Animation,
        typer.Option(
            "--animation",
            help="An animation of the steps for every image with grids (OUT/steps/NAME.gif: the input, each step "
            "with its still-masked tokens marked, the result).",
        ),
    ] = Animation(OutputSettings.animation),
    num_samples: Annotated[
        int,
        typer.Option(
            "--num-samples",
            min=1,
            help="Results per image, from the random streams of --seed, --seed + 1, ...: NAME_0.png ... and a contact "
            "sheet samples.png (grids and counts: sample 0).",
        ),
    ] = 1,
    fit: Annotated[
        Fit,
        typer.Option(
            "--fit",
            help="Images of another size than the model's: crop (a window with context around each group of holes, "
            "resized to the model and back), resize (the whole image), none (refuse them); auto = crop when larger, "
            "resize when smaller. Known pixels stay bit-identical; results are PNG at the input's size.",
        ),
    ] = Fit.auto,
    decode: dict | None = None,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Inpaint masked images: encode, fill the masked tokens iteratively under a mask schedule, decode.

    Writes OUT/images/<name>.png (the folder FID reads), per-step grids OUT/steps/<name>_mask.png (white =
    known, black = still masked) and OUT/steps/<name>_image.png (input, each step, final), OUT/overview.png
    (input | result) and OUT/report.json (settings and per-image still-masked counts after every step).

    [bold]Example[/bold]: maskgit inpaint --images data/emoji64/masked_image --masks data/emoji64/mask64 --transformer weights/maskgit-emoji64.safetensors --vqgan weights/vqgan-emoji64.safetensors -o runs/inpaint --schedule square

    [bold]Your own images[/bold] (any size; masks of the same size, or transparent holes): maskgit inpaint --images photos --masks photo-masks -o out

    [bold]Generated masks[/bold]: maskgit inpaint --images photos --mask-kind box -o out

    [bold]Your own model[/bold] (from `maskgit fit`): maskgit inpaint --model models/cats --images photos --mask-kind stroke -o out
    """
    from maskgit_cli.decoding.folders import inpaint_folder

    batch_size = decode.pop("batch_size")
    settings = inpaint_settings(**steps, **decode)
    batch_size = batch_size or _batch_size(settings)
    s = inpaint_folder(
        *weights_of(inputs, model),
        inputs["images"],
        output,
        settings,
        **_inputs(inputs),
        grids=grids,
        batch_size=batch_size,
        device=device(device_name),
        num_workers=None,
        layout=plain(layout) or (LAB_OUTPUT["layout"] if settings.lab else OutputSettings.layout),
        num_samples=num_samples,
        fit=fit.value,
        animation=plain(animation),
    )
    if s is None:  # another process of a torchrun: rank 0 wrote the folder and reports it
        return
    if s.steps_capped:
        typer.echo(f"Warning: {s.steps_capped}", err=True)
    if as_json:
        keys = ("output", "results", "grids", "images", "seconds", "images_per_second", "mean_still_masked")
        print_json({k: getattr(s, k) for k in keys})
        return
    counts = ", ".join(f"{c:.1f}" for c in s.mean_still_masked)
    out(
        f"inpainted {s.images} images into {s.results} ({s.images_per_second:.1f} img/s); "
        f"mean still-masked tokens after each step: {counts}"
    )
    grids = f"grids: {s.grids}, " if s.grids else ""
    out(f"{grids}overview: {s.output}/overview.png, report: {s.output}/report.json")
    if s.model and s.model.get("note"):  # what the model knows, from its card: why a photo may come out a smudge
        sized = f" ({s.other_size} of {s.images} images here are not {s.size}x{s.size})" if s.other_size else ""
        out(f"model {s.model.get('name') or ''}: {s.model['note']}{sized}")


@command("sweep", INPAINT)
@INPUTS.add()
@DECODE.add()
def sweep_cmd(
    *,
    inputs: dict | None = None,
    model: ModelOpt = None,
    ref: Annotated[
        Path,
        typer.Option(
            "--ref",
            help="Ground truth: a folder of images (sorted name order) or the lab's test_gt.csv; a .npz from "
            "`maskgit fid-stats` works for FID only.",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder: sweep.csv, sweep.png, sweep.json.")],
    schedules: Annotated[
        str | None,
        typer.Option(
            "--schedules",
            help="Comma-separated schedules (names as --schedule takes), e.g. cosine,linear,square. "
            + shown_default(f"all {len(SCHEDULES)}"),
        ),
    ] = None,
    total_iters: Annotated[
        str, typer.Option("--total-iter", help="Comma-separated T values (r = (t+1)/T), e.g. 4,8,12.")
    ] = str(DecodeSettings.total_iter),
    sweet_spots: Annotated[
        str | None,
        typer.Option(
            "--sweet-spot",
            help="Comma-separated numbers of steps actually run, e.g. 1,2,3; S > T is skipped. "
            + default_help(DecodeSettings, "sweet_spot"),
        ),
    ] = None,
    samplers: Annotated[
        str | None,
        typer.Option(
            "--samplers",
            help="Comma-separated samplers to compare, e.g. confidence,halton. The halton sampler ignores the "
            "schedule and T: its cells of the same S are computed once (same_as). "
            + shown_default("--sampler's value"),
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
    save_images: Annotated[
        bool,
        typer.Option(
            "--save-images",
            help="Also write every cell's images to OUT/images/<cell>/ and, for the first 8 images, its step grids to "
            "OUT/steps/<cell>/ (NAME_mask.png, NAME_image.png, as inpaint writes them).",
        ),
    ] = False,
    decode: dict | None = None,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Find the best mask schedule, T and sweet spot (and sampler): inpaint a test set over a grid and score every cell.

    The models are loaded once and the inputs VQGAN-encoded once; each cell (sampler, schedule, T, S <= T) runs the
    iterative decoding and is scored at once: FID (and KID) when the Inception weights are on disk, otherwise
    PSNR/SSIM over the hole pixels and whole images against --ref (the output says which and why). Best = lowest
    FID, else highest hole PSNR. Writes OUT/sweep.csv (one row per cell), OUT/sweep.png and OUT/sweep.json, and
    prints a table and the best setting as a ready-to-run `maskgit inpaint` line.

    [bold]Example[/bold]: maskgit sweep --images data/emoji64/masked_image --masks data/emoji64/mask64 --ref data/emoji64/test --transformer weights/maskgit-emoji64.safetensors --vqgan weights/vqgan-emoji64.safetensors -o runs/sweep --total-iter 4,8 --sweet-spot 2,3,4,8
    """
    from maskgit_cli.evaluation.sweep import make_cells, run_sweep
    from maskgit_cli.evaluation.sweep_report import best_line, render_table, result_dict

    names = parse_schedules(schedules)
    ts = parse_int_list(total_iters, "--total-iter", "4,8,12")
    ss = parse_int_list(sweet_spots, "--sweet-spot", "1,2,3")
    with option_values():  # a grid without a cell (every S > T) is a bad option value too
        make_cells(names, ts, ss)
    batch_size = decode.pop("batch_size")
    settings = inpaint_settings(schedule=names[0], total_iter=max(ts), **decode)
    batch_size = batch_size or _batch_size(settings)
    r = run_sweep(
        *weights_of(inputs, model),
        inputs["images"],
        ref,
        output,
        **_inputs(inputs),
        schedules=names,
        total_iters=ts,
        sweet_spots=ss,
        samplers=parse_samplers(samplers, settings.decode.sampler),
        settings=settings,
        metric=metric.value,
        fid_mode=fid_mode.value,
        kid=kid,
        inception=inception,
        device=device(device_name),
        batch_size=batch_size,
        save_images=save_images,
    )
    if as_json:
        print_json(result_dict(r))
        return
    from rich.console import Console

    render_table(r, Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120))
    out(r.metric_note)
    out(best_line(r))
    out(f"run it: {r.command}")
    out(f"score it: {r.fid_command}")
    out(f"wrote {', '.join(r.files.values())}")


# ---------------------------------------------------------------------------------------------------------
# sweep's comma lists


def parse_schedules(text: str | None) -> list[str]:
    """``cosine,linear`` (names or aliases, case-insensitive) or ``all`` / None -> canonical names, in order."""
    from maskgit_cli.schedules import canonical_schedule

    if text is None or text.strip().lower() == "all":
        return list(SCHEDULES)
    names: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise OptionError(f"--schedules {text!r}: empty name in the list (expected e.g. cosine,linear,square)")
        try:
            name = canonical_schedule(item)
        except MaskgitError:
            raise OptionError(
                f"--schedules: unknown schedule {item!r}; valid names: {', '.join(SCHEDULE_NAMES)}, or all"
            ) from None
        if name not in names:
            names.append(name)
    return names


def parse_samplers(text: str | None, default: str) -> list[str]:
    """``confidence,halton`` -> sampler names, in order, without repeats; None -> [``default``]."""
    if text is None:
        return [default]
    names: list[str] = []
    for item in text.split(","):
        item = item.strip().lower()
        if item not in SAMPLERS:
            raise OptionError(f"--samplers {text!r}: unknown sampler {item!r}; expected {', '.join(SAMPLERS)}")
        if item not in names:
            names.append(item)
    return names


def parse_int_list(text: str | None, option: str, example: str = "4,8,12") -> list[int] | None:
    """``4,8,12`` -> sorted unique positive ints (None stays None); one clear error naming the option."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise OptionError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. {example}") from None
    bad = [v for v in values if v < 1]
    if bad:
        raise OptionError(f"{option} {text!r}: every value must be at least 1 (got {bad[0]})")
    return sorted(set(values))
