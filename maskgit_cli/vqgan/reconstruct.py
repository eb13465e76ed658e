"""`maskgit reconstruct`: encode and decode an image folder with a VQGAN, write the reconstructions, score them.

Besides PSNR/SSIM and codebook use it measures the VQGAN's *context fidelity* (docs/decoding.md, "A tokenizer that
keeps the context"): every image is also encoded with the holes of a generated mask filled as inpainting fills them
(one mask per image, the kinds of ``tokenize --masked-copies``, a pure function of ``mask_seed`` and the image's
index), and the share of tokens outside the regenerated region that keep their clean value is reported for
``--dilate`` 0 and 1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgit_cli.data.images import list_images, load_image, save_image, to_uint8, to_unit
from maskgit_cli.data.masks import token_mask_for
from maskgit_cli.errors import MaskgitError
from maskgit_cli.metrics import codebook_usage, psnr, ssim
from maskgit_cli.progress import progress_bar
from maskgit_cli.runtime import autocast
from maskgit_cli.viz import save_grid
from maskgit_cli.vqgan.model import VQGAN
from maskgit_cli.vqgan.tokens import context_counts, masked_copy_masks
from maskgit_cli.weights import load_model


def default_grid_path(out_dir: str | Path) -> Path:
    """``OUT-grid.png`` beside the output folder, so the folder holds only reconstructions (it stays a clean
    image folder for FID or sorted-name pairing)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}-grid.png"


@torch.no_grad()
def reconstruct_folder(
    images_dir,
    vqgan,
    out_dir,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    resize: bool = False,
    grid_path=None,
    grid_images: int = 16,
    grid_columns: int = 8,
    mask_seed: int = 0,
) -> dict[str, Any]:
    """Reconstruct every image of ``images_dir`` with ``vqgan`` (a VQGAN or the path of its weights).

    Each reconstruction is written to ``out_dir`` under its input's file name. Returns a summary: number of
    images, mean PSNR (dB, over images that are not reproduced exactly; those are counted in ``identical``,
    their PSNR being infinite) and SSIM, the fraction of the codebook used and its perplexity, the grid path,
    wall time. The grid (``grid_path``, default :func:`default_grid_path`) shows the first ``grid_images``
    originals and reconstructions in alternating rows of ``grid_columns``. ``context_fidelity`` maps ``--dilate``
    0 and 1 to the share of tokens outside the regenerated region that generated holes (``mask_seed``) leave as they
    were.
    """
    device = torch.device(device)
    model = vqgan if isinstance(vqgan, VQGAN) else load_model(vqgan, "vqgan", device)
    model = model.to(device).eval()
    files = list_images(images_dir)
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(images_dir).resolve():
        raise MaskgitError(f"-o {out_dir}: is the input folder; reconstructions would overwrite the originals")
    out_dir.mkdir(parents=True, exist_ok=True)
    size = model.config.img_resolution
    psnrs, ssims, codes = [], [], []
    fidelity = {0: [0, 0], 1: [0, 0]}  # dilate -> [same, outside]
    grid_orig: list[np.ndarray] = []
    grid_rec: list[np.ndarray] = []
    t0 = time.perf_counter()
    with progress_bar(len(files), "reconstruct", "img") as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            ref = np.stack([load_image(f, size, resize) for f in chunk])
            x = to_unit(torch.from_numpy(ref).permute(0, 3, 1, 2).to(device))
            with autocast(device, precision):
                idx = model.encode(x)
                rec = to_uint8(model.decode(idx))
                holes = masked_copy_masks(list(range(start, start + len(chunk))), 0, 1, mask_seed, size)[:, 0]
                masked = model.encode_masked(x, holes.to(device))
            token_holes = token_mask_for(holes, model.config.latent_resolution)
            for dilate, counts in fidelity.items():
                same, outside = context_counts(idx.cpu(), masked.cpu()[:, None], token_holes[:, None], dilate)
                counts[0] += same
                counts[1] += outside
            for f, img in zip(chunk, rec):
                save_image(img, out_dir / f.name)
            psnrs.append(psnr(rec, ref))
            ssims.append(ssim(rec, ref))
            codes.append(idx.cpu())
            take = max(0, grid_images - len(grid_orig))
            grid_orig += list(ref[:take])
            grid_rec += list(rec[:take])
            bar.advance(len(chunk))
    seconds = time.perf_counter() - t0

    rows = []
    for c in range(0, len(grid_orig), grid_columns):
        rows += [grid_orig[c : c + grid_columns], grid_rec[c : c + grid_columns]]
    grid = save_grid(rows, grid_path or default_grid_path(out_dir), scale=2)

    p = np.concatenate(psnrs)
    finite = p[np.isfinite(p)]
    usage, perplexity = codebook_usage(torch.cat(codes), model.config.num_codebook_vectors)
    return {
        "images": len(files),
        "out_dir": str(out_dir),
        "grid": str(grid),
        "psnr": float(finite.mean()) if len(finite) else None,  # None: every image reproduced exactly
        "psnr_min": float(finite.min()) if len(finite) else None,
        "identical": int(len(p) - len(finite)),
        "ssim": float(np.concatenate(ssims).mean()),
        "codebook_usage": usage,
        "perplexity": perplexity,
        "num_codes": model.config.num_codebook_vectors,
        "context_fidelity": {str(d): same / max(outside, 1) for d, (same, outside) in fidelity.items()},
        "encoder_reach": model.config.encoder_reach,
        "precision": precision,
        "seconds": round(seconds, 2),
        "img_per_s": round(len(files) / max(seconds, 1e-9), 1),
    }


def format_summary(s: dict[str, Any]) -> str:
    """The human-readable result lines of `maskgit reconstruct`."""
    p = "inf (all images reproduced exactly)" if s["psnr"] is None else f"{s['psnr']:.2f} dB"
    identical = f" ({s['identical']} reproduced exactly, not in the mean)" if s["identical"] and s["psnr"] else ""
    fidelity, k = s["context_fidelity"], s["encoder_reach"]
    reach = "image-wide encoder" if k is None else "local encoder: a token sees its own patch"
    if k:
        reach += f" and {k} ring{'s' if k > 1 else ''} of patches around it"
    return "\n".join(
        [
            f"reconstructed {s['images']} images into {s['out_dir']} ({s['img_per_s']} img/s)",
            f"PSNR {p}{identical}   SSIM {s['ssim']:.4f}",
            f"codebook: {s['codebook_usage'] * 100:.1f}% of {s['num_codes']} codes used, perplexity "
            f"{s['perplexity']:.1f}",
            f"context fidelity (tokens outside the regenerated region that generated holes leave unchanged): "
            f"{fidelity['1'] * 100:.1f}% at --dilate 1, {fidelity['0'] * 100:.1f}% at --dilate 0 ({reach})",
            f"grid: {s['grid']}",
        ]
    )
