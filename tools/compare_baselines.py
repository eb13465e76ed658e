"""Compare inpainting results with classical inpainting (OpenCV Telea) on the same masked images.

    python tools/compare_baselines.py --images data/emoji64/masked_image --masks data/emoji64/mask64 \
        --ref data/emoji64/test --pred ours=runs/inpaint/images [--pred other=DIR ...] -o runs/compare

Writes the Telea results to OUT/telea/ and prints a Markdown table: PSNR/SSIM over the hole pixels and over
whole images (`maskgit score`), and FD-pix8, a Frechet distance to the ground truth computed on 8x8
average-pooled RGB images (192 features). FD-pix8 stands in for FID where the Inception weights are not
available (as on this project's machines); it is not comparable to FID numbers.
The Telea row needs OpenCV: `pip install opencv-python-headless` (not a dependency of maskgit itself); without
it the table has the other rows only.

With `--accuracy NAME=TRANSFORMER,VQGAN` (repeatable) it also prints each model pair's masked-token accuracy under
these masks: the tokens the holes touch plus one ring (`--dilate 1`) are masked in the VQGAN's tokens of the ground
truth, and one forward pass of the transformer predicts them (argmax, no guidance): the number `maskgit train`
validates as `inpaint_acc`.
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


def token_accuracy(transformer_path: str, vqgan_path: str, ref: Path, masks: Path, dilate: int = 1) -> float:
    """Masked-token accuracy of a transformer under the masks, context from the ground truth's tokens (fp32)."""
    import torch

    from maskgit_cli.data.masks import token_mask_for
    from maskgit_cli.transformer.model import forbid_mask_token, mask_tokens
    from maskgit_cli.weights import load_model

    vqgan, transformer = load_model(vqgan_path, "vqgan").eval(), load_model(transformer_path, "transformer").eval()
    refs, holes = list_images(ref), list_images(masks)
    correct = total = 0
    with torch.no_grad():
        for i in range(0, len(refs), 64):
            x = torch.from_numpy(np.stack([load_image(f) for f in refs[i : i + 64]])).permute(0, 3, 1, 2) / 255.0
            h = torch.from_numpy(np.stack([load_mask(f) == HOLE for f in holes[i : i + 64]]))
            tokens = vqgan.encode(x.float()).flatten(1)
            masked = token_mask_for(h, vqgan.config.latent_resolution, dilate=dilate).flatten(1)
            mask_id = transformer.config.mask_token_id
            logits = forbid_mask_token(transformer(mask_tokens(tokens, masked, mask_id)).float(), mask_id)
            correct += int((logits.argmax(-1) == tokens)[masked].sum())
            total += int(masked.sum())
    return correct / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="masked images (holes gray)")
    ap.add_argument("--masks", type=Path, required=True, help="lab-format masks (0 = hole)")
    ap.add_argument("--ref", type=Path, required=True, help="ground-truth images")
    ap.add_argument("--pred", action="append", default=[], help="NAME=DIR of inpainted images (repeatable)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--accuracy", action="append", default=[], help="NAME=TRANSFORMER,VQGAN (repeatable)")
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
    accuracy = {}
    for spec in args.accuracy:
        name, _, files = spec.partition("=")
        transformer, _, vqgan = files.partition(",")
        accuracy[name] = token_accuracy(transformer, vqgan, args.ref, args.masks)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "compare.json").write_text(json.dumps({"rows": rows, "token_accuracy": accuracy}, indent=2))
    print("| method | hole PSNR (dB) | hole SSIM | PSNR (dB) | SSIM | FD-pix8 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['psnr_hole']:.2f} | {r['ssim_hole']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} "
            f"| {r['fd_pix8']:.3f} |"
        )
    for name, acc in accuracy.items():
        print(f"masked-token accuracy under these masks (--dilate 1, one pass, argmax), {name}: {acc:.4f}")


if __name__ == "__main__":
    main()
