#!/usr/bin/env python3
"""The numbers and the picture of docs/fit.md: a 128x128 model against scikit-image's biharmonic inpainting on the
fluent128 test set.

    maskgit inpaint --images data/fluent128/masked_image --masks data/fluent128/mask128 --model runs/model128 \
        -o runs/inpaint128 --device cpu
    python tools/fit128_figures.py --pred runs/inpaint128/images -o runs/compare128 [--picture docs/fit128.png]

Fills every test hole with ``skimage.restoration.inpaint_biharmonic`` (per channel, from the masked image; the
result's known pixels are the input's) into OUT/biharmonic/, scores both folders with ``maskgit score``'s
``score_folders`` (PSNR/SSIM over the hole pixels and over whole images), writes OUT/compare.json, prints a
Markdown table, and with ``--picture`` saves a grid: input with the hole, maskgit, biharmonic, truth (one row per
image of ``--rows``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskgit_cli.data.images import list_images, load_image, save_image  # noqa: E402
from maskgit_cli.data.masks import HOLE, load_mask  # noqa: E402
from maskgit_cli.evaluation.score import score_folders  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "fluent128"
COLUMNS = ("input", "maskgit", "biharmonic", "truth")


def biharmonic(images_dir: Path, masks_dir: Path, out: Path) -> Path:
    from skimage.restoration import inpaint_biharmonic

    out.mkdir(parents=True, exist_ok=True)
    for img_path, mask_path in zip(list_images(images_dir), list_images(masks_dir), strict=True):
        image = load_image(img_path)
        holes = load_mask(mask_path) == HOLE
        filled = inpaint_biharmonic(image.astype(np.float64) / 255.0, holes, channel_axis=-1)
        result = np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)
        result[~holes] = image[~holes]
        save_image(result, out / (img_path.stem + ".png"))
    return out


def picture(rows: list[int], folders: dict[str, Path], path: Path, scale: int = 1) -> None:
    """A grid, one row per test image: the columns of COLUMNS, each 128x128, with a header line."""
    size, pad, head = 128 * scale, 4, 18
    grid = Image.new("RGB", (len(COLUMNS) * (size + pad) + pad, head + len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(COLUMNS):
        draw.text((pad + c * (size + pad) + 4, 3), name, fill=(0, 0, 0))
    for r, i in enumerate(rows):
        for c, name in enumerate(COLUMNS):
            with Image.open(folders[name] / f"image_{i:03d}.png") as img:
                tile = img.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
            grid.paste(tile, (pad + c * (size + pad), head + r * (size + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", type=Path, required=True, help="maskgit's results on data/fluent128/masked_image")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--picture", type=Path, help="save the grid here (e.g. docs/fit128.png)")
    ap.add_argument("--rows", default="0,1,2,3,4,5", help="test images of the grid (default: the first six)")
    args = ap.parse_args()

    masked, masks, ref = DATA / "masked_image", DATA / "mask128", DATA / "test"
    bih = args.output / "biharmonic"
    if len(list_images(bih)) != len(list_images(masked)) if bih.is_dir() else True:
        biharmonic(masked, masks, bih)
    rows = []
    for name, folder in {"masked input (gray holes)": masked, "maskgit": args.pred, "biharmonic": bih}.items():
        s = score_folders(folder, ref, masks)
        rows.append({"method": name, **{k: s[k] for k in ("psnr_hole", "ssim_hole", "psnr", "ssim", "count")}})
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "compare.json").write_text(json.dumps({"rows": rows}, indent=2))
    print("| method | hole PSNR (dB) | hole SSIM | PSNR (dB) | SSIM |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['psnr_hole']:.2f} | {r['ssim_hole']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    if args.picture:
        folders = {"input": masked, "maskgit": args.pred, "biharmonic": bih, "truth": ref}
        picture([int(i) for i in args.rows.split(",")], folders, args.picture)
        print(f"wrote {args.picture} ({args.picture.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
