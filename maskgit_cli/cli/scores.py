"""Scoring commands: fid, fid-stats, score."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli.cli.common import FID, INPAINT, JsonOpt, command, out, print_json, result


@command("fid", INPAINT)
@FID.add()
def fid_cmd(
    pred: Annotated[Path, typer.Argument(help="Folder of generated/inpainted images (e.g. OUT/images).")],
    ref: Annotated[
        Path,
        typer.Argument(
            help="Reference: a folder of images, a .npz from `maskgit fid-stats`, or the lab's test_gt.csv."
        ),
    ],
    kid: Annotated[bool, typer.Option("--kid", help="Also compute KID (kernel inception distance).")] = False,
    fid: dict | None = None,
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

    r = compute_fid(pred, ref, kid=kid, **_fid_options(fid))
    h, w = r["image_size"]
    lines = [
        f"FID {r['fid']:.4f}  (mode {r['mode']}, {r['pred_count']} PRED vs {r['ref_count'] or '?'} REF images "
        f"of {w}x{h}, REF {r['ref_kind']})",
        *([f"KID {r['kid']:.6f}"] if kid else []),
        f"features: {r['feature_extractor']} ({r['feature_dim']}-d), weights: {r['weights']}",
    ]
    result(r, as_json, "\n".join(lines))


@command("fid-stats", INPAINT)
@FID.add()
def fid_stats_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of reference images (or the lab's test_gt.csv).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Statistics file to write, e.g. ref.npz.")],
    features: Annotated[
        bool, typer.Option("--features/--no-features", help="Store the features too (needed for --kid).")
    ] = True,
    fid: dict | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Precompute a reference's FID statistics (mu, sigma, count, mode, extractor, image size) for `maskgit fid`.

    `maskgit fid PRED ref.npz` then gives the same number as `maskgit fid PRED DIR`, without re-reading DIR.
    A file is only usable with the --mode it was made with.

    [bold]Example[/bold]: maskgit fid-stats data/emoji64/test -o runs/emoji64-test.npz
    """
    from maskgit_cli.evaluation.fid import make_stats

    r = make_stats(images, output, save_features=features, **_fid_options(fid))
    h, w = r["image_size"]
    result(
        r,
        as_json,
        f"wrote {r['path']}: {r['count']} images of {w}x{h}, mode {r['mode']}, {r['feature_extractor']} "
        f"({r['feature_dim']}-d){'' if features else ', no features (no KID)'}",
    )


def _fid_options(fid: dict) -> dict:
    """The FID option group as compute_fid/make_stats take it."""
    return {
        "mode": fid["mode"],
        "device": fid["device"],
        "batch_size": fid["batch_size"],
        "num_workers": fid["workers"],
        "inception": fid["inception"],
    }


@command("score", INPAINT)
def score_cmd(
    pred: Annotated[Path, typer.Argument(help="Folder of inpainted images.")],
    ref: Annotated[Path, typer.Argument(help="Folder of ground-truth images, or the lab's test_gt.csv.")],
    masks: Annotated[
        Path | None, typer.Option("--masks", help="Lab-format masks (0 = hole): also score the hole pixels only.")
    ] = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Also print one line per image.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """PSNR and SSIM of PRED against REF, whole images and, with --masks, hole pixels only.

    Images, references and masks pair up in sorted file-name order; counts and sizes must match. Works offline
    (no Inception needed). In --json, null stands for an infinite PSNR (identical images) or a mask without holes.

    [bold]Example[/bold]: maskgit score runs/inpaint/images data/emoji64/test --masks data/emoji64/mask64 --json
    """
    from maskgit_cli.evaluation.score import finite_or_none, score_folders

    r = score_folders(pred, ref, masks)
    if as_json:
        if not per_image:
            r = {k: v for k, v in r.items() if k != "images"}
        print_json(finite_or_none(r))
        return
    if per_image:
        hole = masks is not None
        out(
            f"{'image':<24} {'PSNR':>8} {'SSIM':>7}"
            + (f" {'PSNR hole':>10} {'SSIM hole':>10} {'hole':>6}" if hole else "")
        )
        for row in r["images"]:
            line = f"{row['pred']:<24} {row['psnr']:>8.3f} {row['ssim']:>7.4f}"
            if hole:
                line += f" {row['psnr_hole']:>10.3f} {row['ssim_hole']:>10.4f} {row['hole_fraction']:>6.1%}"
            out(line)
    out(f"{r['count']} image pairs: PSNR {r['psnr']:.3f} dB, SSIM {r['ssim']:.4f} (whole images)")
    if masks is not None:
        out(
            f"holes only: PSNR {r['psnr_hole']:.3f} dB, SSIM {r['ssim_hole']:.4f} "
            f"({r['images_with_holes']} images with holes, mean hole {r['hole_fraction']:.1%} of the pixels)"
        )
