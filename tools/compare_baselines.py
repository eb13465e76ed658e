"""Compare inpainting results with classical inpainting (OpenCV Telea) on the same masked images.

    python tools/compare_baselines.py --images data/emoji64/masked_image --masks data/emoji64/mask64 \
        --ref data/emoji64/test --pred ours=runs/inpaint/images [--pred other=DIR ...] -o runs/compare

Writes the Telea results to OUT/telea/ and prints a Markdown table: PSNR/SSIM over the hole pixels and over
whole images (`maskgit score`), and FD-pix8, a Frechet distance to the ground truth computed on 8x8
average-pooled RGB images (192 features). FD-pix8 stands in for FID where the Inception weights are not
available (as on this project's machines); it is not comparable to FID numbers.
The Telea row needs OpenCV: `pip install opencv-python-headless` (not a dependency of maskgit itself); without
it the table has the other rows only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskgit_cli.data.images import list_images, load_image, save_image
from maskgit_cli.data.masks import HOLE, load_mask
from maskgit_cli.evaluation.fid import compute_fid
from maskgit_cli.evaluation.score import score_folders


def pixels8(x):
    """float32 (B,3,H,W) in [0,255] -> (B,192) features: 8x8 average-pooled RGB in [0,1]."""
    import torch.nn.functional as F

    return F.adaptive_avg_pool2d(x / 255.0, 8).flatten(1)


def telea(images_dir: Path, masks_dir: Path, out: Path, radius: int = 3) -> Path:
    import cv2

    for img_path, mask_path in zip(list_images(images_dir), list_images(masks_dir), strict=True):
        image = load_image(img_path)
        holes = (load_mask(mask_path) == HOLE).astype(np.uint8) * 255
        result = cv2.inpaint(image[..., ::-1].copy(), holes, radius, cv2.INPAINT_TELEA)[..., ::-1]
        save_image(np.ascontiguousarray(result), out / (img_path.stem + ".png"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="masked images (holes gray)")
    ap.add_argument("--masks", type=Path, required=True, help="lab-format masks (0 = hole)")
    ap.add_argument("--ref", type=Path, required=True, help="ground-truth images")
    ap.add_argument("--pred", action="append", default=[], help="NAME=DIR of inpainted images (repeatable)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()

    sets = {"masked input (gray holes)": args.images}
    try:
        sets["OpenCV Telea"] = telea(args.images, args.masks, args.output / "telea")
    except ImportError:  # a GPU machine without OpenCV still compares the --pred sets with each other
        print("no OpenCV (pip install opencv-python-headless): the Telea row is left out", file=sys.stderr)
    for spec in args.pred:
        name, _, folder = spec.partition("=")
        sets[name] = Path(folder)
    rows = []
    for name, folder in sets.items():
        s = score_folders(folder, args.ref, args.masks)
        fd = compute_fid(folder, args.ref, feature_extractor=pixels8, device="cpu", num_workers=0)["fid"]
        rows.append(
            {
                "method": name,
                "psnr_hole": s["psnr_hole"],
                "ssim_hole": s["ssim_hole"],
                "psnr": s["psnr"],
                "ssim": s["ssim"],
                "fd_pix8": fd,
                "count": s["count"],
            }
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "compare.json").write_text(json.dumps(rows, indent=2))
    print("| method | hole PSNR (dB) | hole SSIM | PSNR (dB) | SSIM | FD-pix8 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['psnr_hole']:.2f} | {r['ssim_hole']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} "
            f"| {r['fd_pix8']:.3f} |"
        )


if __name__ == "__main__":
    main()
