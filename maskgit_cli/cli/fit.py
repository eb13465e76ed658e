"""Your own model: fit (every stage in one command, into a model folder)."""

from __future__ import annotations

import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli.cli.common import Device, DeviceOpt, JsonOpt, command, out, plain, print_json, shown_default
from maskgit_cli.fit.settings import BUDGET_SHARES, FIT_PRESETS
from maskgit_cli.vqgan.resolution import DEFAULT_DOWNSAMPLE, DEFAULT_RESOLUTION, DOWNSAMPLES, RESOLUTIONS

FIT = "Your own model"
FitPreset = StrEnum("FitPreset", {v: v for v in FIT_PRESETS})


@command("fit", FIT)
def fit_cmd(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Folder(s) of your images (any size: resized to the model's). Several folders are trained on "
            "together; the same file name in two of them is two images.",
            metavar="IMAGES",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="The model folder: vqgan.safetensors, transformer.safetensors, card.json, README.md."
        ),
    ],
    val: Annotated[
        Path | None,
        typer.Option(
            "--val",
            help="Validation images. "
            + shown_default("10% of IMAGES held out by the sha256 of the file name, at least 1"),
        ),
    ] = None,
    val_masks: Annotated[
        Path | None,
        typer.Option(
            "--val-masks",
            help="Lab masks of the validation images, at the model's size (e.g. data/emoji64/val_mask64). "
            + shown_default("generated stroke masks"),
        ),
    ] = None,
    preset: Annotated[
        FitPreset,
        typer.Option(
            "--preset",
            help="default = the settings of `make weights` (local VQGAN, small transformer; GPU-sized on CUDA); "
            "tiny = a few steps of the tiny models (tests).",
        ),
    ] = FitPreset.default,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            help=f"Image side R of the model ({', '.join(map(str, RESOLUTIONS))}): images of other sizes are resized "
            "to R x R. " + shown_default(str(DEFAULT_RESOLUTION)),
        ),
    ] = None,
    downsample: Annotated[
        int | None,
        typer.Option(
            "--downsample",
            help=f"Pixels f of a token's side ({', '.join(map(str, DOWNSAMPLES))}): the token grid is R/f x R/f. "
            + shown_default(str(DEFAULT_DOWNSAMPLE)),
        ),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            min=0.1,
            help="Minutes for the whole fit, split over the stages ("
            + ", ".join(f"{s} {share:.0%}" for s, share in BUDGET_SHARES.items())
            + "): each stage stops at its share with a usable model. "
            + shown_default("none, the preset's steps"),
        ),
    ] = None,
    device_name: DeviceOpt = Device.auto,
    as_json: JsonOpt = False,
) -> None:
    """Train a model of your own images in one command: VQGAN, its decoder, tokens, transformer, with the settings
    `make weights` uses, into a model folder that inpaint, serve, info and Inpainter.from_pretrained take.

    Every stage's run is kept under MODEL/runs/<stage>/; running the same command again continues where it stopped
    (Ctrl-C loses at most the current checkpoint interval), skipping the stages that are done. A line per stage in
    the log; at the end a table of the stages (time, img/s, validation figures) and the command to inpaint with the
    model. The model card (card.json, README.md) says what it was trained on, how long, where, and how well.

    [bold]Example[/bold]: maskgit fit photos/cats -o models/cats --time-budget 120

    [bold]At 128x128[/bold]: maskgit fit photos/cats -o models/cats128 --resolution 128 --downsample 8

    [bold]emoji64 as `make weights`[/bold]: maskgit fit data/emoji64/train --val data/emoji64/val --val-masks data/emoji64/val_mask64 -o models/emoji64

    [bold]Three emoji styles[/bold]: maskgit fit data/emoji64/train data/blob64/train data/fluent64/train --val data/emoji64/val --val-masks data/emoji64/val_mask64 -o models/styles
    """
    from maskgit_cli.fit.model import fit_model, summary_dict

    s = fit_model(
        images,
        output,
        val=val,
        val_masks=val_masks,
        preset=plain(preset),
        resolution=resolution,
        downsample=downsample,
        time_budget=time_budget,
        device=plain(device_name),
        command=shlex.join(["maskgit", *sys.argv[1:]]) if sys.argv[1:2] == ["fit"] else None,
    )
    if as_json:
        print_json(summary_dict(s))
    else:
        for line in stage_table(s.stages):
            out(line)
        if s.status == "finished":
            out(f"model: {s.model} ({s.card['note']})")
            out(f"inpaint with it: {s.inpaint}")
        else:
            out(f"{s.status}: run the same command again to continue")
    if s.exit_code:
        raise typer.Exit(s.exit_code)


def stage_table(stages: list[dict]) -> list[str]:
    """The stages as a table: time, img/s, steps and the validation figures of the weights kept."""
    lines = [f"{'stage':<12} {'time':>9} {'img/s':>8} {'steps':>6}  validation"]
    for st in stages:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in st["validation"].items())
        steps = "-" if st["steps"] is None else st["steps"]
        stopped = f" (stopped by the {st['stopped_by']})" if st.get("stopped_by") else ""
        lines.append(
            f"{st['stage']:<12} {st['seconds']:>7.1f} s {st['images_per_second']:>8.1f} {steps:>6}  {figures}{stopped}"
        )
    return lines
