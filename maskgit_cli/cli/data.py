"""`maskgit masks`: lab-format masks for any image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskgit_cli.cli.common import DATA, JsonOpt, MaskKind, command, out, print_json


@command("masks", DATA)
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
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace masks (and masked images) of the same names already there.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write lab-format masks for an image folder: 8-bit PNGs, 0 (black) = hole, 255 = known.

    Stroke and box masks cover 15-40% of the pixels. Mask i pairs with the i-th image in sorted name order.

    [bold]Example[/bold]: maskgit masks my_images -o my_masks --kind stroke --seed 0 --masked-out my_masked
    """
    from maskgit_cli.data.mask_generator import write_masks

    summary = write_masks(images, output, kind.value, seed, masked_out, overwrite=overwrite)
    if as_json:
        print_json(summary)
        return
    hf = summary["hole_fraction"]
    out(
        f"wrote {summary['count']} {kind.value} masks to {output} ({summary['first']} .. {summary['last']}), "
        f"holes {hf['mean']:.1%} on average ({hf['min']:.1%}-{hf['max']:.1%})"
        + (f"; masked images in {masked_out}" if masked_out else "")
    )
