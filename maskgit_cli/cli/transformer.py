"""Stage 2 commands: train, convert-transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli.cli.common import (
    LOOP,
    STAGE2,
    JsonOpt,
    LossOn,
    QkvOrder,
    ResumeOpt,
    TransformerPreset,
    command,
    default_help,
    given,
    loop_help,
    out,
    plain,
    print_json,
)
from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.settings import TrainConfig


@command("train", STAGE2)
@LOOP.add(
    help=loop_help(
        TrainConfig,
        epochs="Epochs (passes over the token grids).",
        batch_size="Global batch (split across torchrun processes).",
        lr="Peak learning rate (AdamW, warmup then cosine decay).",
        warmup_steps="Linear warmup steps.",
    )
)
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
    resume: ResumeOpt = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML file of settings (top level or a \\[train] table); options given here win."
        ),
    ] = None,
    preset: Annotated[
        TransformerPreset | None,
        typer.Option(
            "--preset",
            help="Model size: tiny, small (2-core CPU), base (GPU, 26M), lab (the lab's 72.7M). "
            + default_help(TrainConfig, "preset"),
        ),
    ] = None,
    accum_grad: Annotated[
        int | None,
        typer.Option(
            "--accum-grad",
            min=1,
            help="Micro-batches per optimizer step. " + default_help(TrainConfig, "accum_grad"),
        ),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            "--weight-decay",
            min=0.0,
            help="AdamW decay on matrices and embeddings only. " + default_help(TrainConfig, "weight_decay"),
        ),
    ] = None,
    grad_clip: Annotated[
        float | None,
        typer.Option(
            "--grad-clip", min=0.0, help="Max gradient norm, 0 = off. " + default_help(TrainConfig, "grad_clip")
        ),
    ] = None,
    mask_ratio: Annotated[
        str | None,
        typer.Option(
            "--mask-ratio",
            help="cosine (paper: r~U\\[0,1), ceil(gamma(r)*N) masked; any schedule name) or uniform:a,b (the lab seed's). "
            + default_help(TrainConfig, "mask_ratio"),
        ),
    ] = None,
    loss_on: Annotated[
        LossOn | None,
        typer.Option("--loss-on", help="masked (paper) or all positions. " + default_help(TrainConfig, "loss_on")),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option("--label-smoothing", min=0.0, max=1.0, help=default_help(TrainConfig, "label_smoothing")),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model. " + default_help(TrainConfig, "compile", switch="--compile/--no-compile"),
        ),
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
    copies_ratio: Annotated[
        float | None,
        typer.Option(
            "--copies-ratio",
            min=0.0,
            max=1.0,
            help="Share of the grids trained on what inpainting sees: a masked copy's tokens as input (needs "
            "`tokenize --masked-copies`), its dilated holes to predict, the clean tokens as targets. "
            + default_help(TrainConfig, "copies_ratio"),
        ),
    ] = None,
    shaped_masks: Annotated[
        float | None,
        typer.Option(
            "--shaped-masks",
            min=0.0,
            max=1.0,
            help="Share of the grids that mask a hole users draw (a generated stroke, box, half or outpaint mask, "
            "as tokens) instead of random positions. " + default_help(TrainConfig, "shaped_masks"),
        ),
    ] = None,
    loop: dict | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the bidirectional transformer by masked visual token modeling on cached tokens.

    Each epoch: validation loss and masked-token accuracy; curves.png; best.safetensors (loadable by
    `maskgit inpaint`). Ctrl-C / SIGTERM saves a resumable checkpoint (exit 130 / 143); --resume continues
    with the same data order, LR schedule and random streams, ending bit-identical to an uninterrupted run
    on CPU. A NaN loss stops with the last good checkpoint kept.

    [bold]Example[/bold]: maskgit train runs/train.tokens --val runs/val.tokens --val-masks data/emoji64/val_mask64 -o runs/maskgit --preset small --epochs 20

    [bold]Several GPUs[/bold]: torchrun --nproc-per-node 4 -m maskgit_cli train runs/train.tokens -o runs/big --preset base
    """
    from maskgit_cli.cli.option_checks import toml_check
    from maskgit_cli.training.run import resolve_run
    from maskgit_cli.transformer.train import train_transformer

    options = given(
        {
            **loop,
            "preset": plain(preset),
            "accum_grad": accum_grad,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "mask_ratio": mask_ratio,
            "loss_on": plain(loss_on),
            "label_smoothing": label_smoothing,
            "compile": compile,
            "ema": ema,
            "copies_ratio": copies_ratio,
            "shaped_masks": shaped_masks,
        }
    )
    data = {"train": train_tokens, "val": val, "val_masks": val_masks}
    run = resolve_run(TrainConfig, "train", options, output=output, resume=resume, data=data, toml=config,
                      check=toml_check("train"))  # fmt: skip
    if run.data["train"] is None:
        raise MaskgitError("give the training token cache (TRAIN_TOKENS), or --resume RUN")
    summary = train_transformer(
        run.data["train"],
        run.data["val"],
        run.output,
        run.config,
        resume=run.resume,
        val_masks_dir=run.data["val_masks"],
    )
    if summary.get("world_size", 1) > 1 and summary.get("rank", 0) != 0:
        return
    if as_json:
        print_json(summary)
    else:
        best = (
            f", best val {summary['best_metric']} {summary['best']:.4f} at step {summary['best_step']}"
            if summary["best"] is not None
            else ""
        )
        out(
            f"{summary['status']} at step {summary['step']}/{summary['total_steps']} in {summary['seconds']:.0f} s{best}; "
            f"weights: {summary['weights']}"
        )
    if summary["exit_code"]:
        raise typer.Exit(summary["exit_code"])


@command("convert-transformer", STAGE2)
def convert_transformer_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A lab student's transformer checkpoint (.pt state_dict).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .safetensors file.")],
    heads: Annotated[
        int, typer.Option("--heads", min=1, help="Attention heads (cannot be read from the weights).")
    ] = 16,
    qkv_order: Annotated[
        QkvOrder,
        typer.Option(
            "--qkv-order",
            help="Row order of a fused qkv weight: qkv (\\[q; k; v], the usual) or per_head (\\[q_h, k_h, v_h] per head).",
        ),
    ] = QkvOrder.qkv,
    tokens: Annotated[
        Path | None,
        typer.Option(
            "--tokens",
            help="Token cache of the training images (`maskgit tokenize`): stores every code's mean pixel patch "
            "for known-pixel guidance (without it, inpaint decodes the patches from the VQGAN).",
        ),
    ] = None,
    vqgan: Annotated[
        Path | None,
        typer.Option(
            "--vqgan",
            help="The VQGAN file the student trained on (e.g. from `maskgit convert-vqgan VQGAN.pt`): recorded, so "
            "that inpaint refuses another VQGAN. --tokens records it too.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a lab student's transformer into our lab preset (post-LN, 768 x 15, 72.7M parameters).

    Maps the common attention layouts (qkv + proj, q/k/v + out_proj, query/key/value + proj, nn.MultiheadAttention,
    per-head ModuleLists); anything unmapped is listed in the error.

    [bold]Example[/bold]: maskgit convert-transformer checkpoints/epoch_best.pt -o lab-transformer.safetensors --tokens cats-train.tokens
    """
    from maskgit_cli.progress import log
    from maskgit_cli.transformer.lab_import import convert_lab_transformer_file

    r = convert_lab_transformer_file(checkpoint, output, heads, qkv_order.value, tokens, vqgan)
    if r["vqgan_sha256"] is None:
        log(
            "warning: no VQGAN recorded (pass --vqgan or --tokens): inpaint cannot check that it is given the VQGAN "
            "this transformer was trained on"
        )
    if as_json:
        print_json(r)
        return
    out(f"wrote {r['output']} ({r['parameters']:,} parameters{', with code patches' if r['code_patches'] else ''})")
