#!/usr/bin/env python3
"""Training FLOPs of `maskgit fit`'s stages with the GPU sizing (maskgit_cli/fit/settings.py), for docs/fit.md's
"What a 256 model costs on a GPU".

    python tools/fit_flops.py [--images 10000] [--sizes 256/16,256/8,128/8] [--peak 990] [--mfu 0.3,0.4]

Forward FLOPs per image (VQGAN encoder with the codebook search, decoder) and per token sequence (transformer) are
counted with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs; convolutions, matmuls and
attention; normalizations and activations are not counted) on the models `fit` builds at each size; a training step
is taken as 3x its forward (forward + backward). Per stage:

- vqgan: steps x batch images through encoder + decoder, trained: 3 x (enc + dec);
- decoder: the training images (and their mirror images) encoded once, then steps x batch decodes trained: 3 x dec;
- tokens: the training images and their mirror images encoded: 2 x N x enc (val ignored);
- transformer: steps x batch sequences of (R/f)^2 tokens, trained: 3 x fwd.

Time = FLOPs / (peak x MFU) for each MFU: what the GPU does at that fraction of its dense bf16 peak.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskgit_cli.fit.settings import SETTINGS  # noqa: E402
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset  # noqa: E402
from maskgit_cli.vqgan.model import VQGAN, vqgan_preset  # noqa: E402


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def forward_flops(resolution: int, downsample: int, gpu: dict) -> dict[str, int]:
    """Forward FLOPs of one image through the encoder (+ codebook search) and the decoder, and of one token
    sequence through the transformer."""
    vqgan = VQGAN(vqgan_preset(gpu["vqgan"]["preset"], resolution, downsample)).eval()
    x = torch.rand(1, 3, resolution, resolution)
    z = vqgan.encode_latents(x).detach()
    grid = resolution // downsample
    config = get_preset(
        gpu["transformer"]["preset"],
        num_image_tokens=grid * grid,
        num_codebook_vectors=vqgan.config.num_codebook_vectors,
    )
    transformer = MaskGITTransformer(config).eval()
    tokens = torch.randint(0, config.num_codebook_vectors, (1, grid * grid))
    return {
        "enc": _count(lambda: vqgan.codebook.nearest(vqgan.encode_latents(x))),
        "dec": _count(lambda: vqgan.decode_latents(z)),
        "transformer": _count(lambda: transformer(tokens)),
        "vqgan_params": vqgan.num_params(),
        "transformer_params": sum(p.numel() for p in transformer.parameters()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000, help="training images N (tokens stage: 2N encodes)")
    ap.add_argument("--sizes", default="256/16,256/8,128/8", help="R/f pairs")
    ap.add_argument("--peak", type=float, default=990.0, help="dense bf16 peak, TFLOP/s (H100 SXM: about 990)")
    ap.add_argument("--mfu", default="0.3,0.4", help="fractions of the peak reached")
    args = ap.parse_args()
    gpu = SETTINGS["default"]["gpu"]
    mfus = [float(m) for m in args.mfu.split(",")]
    for size in args.sizes.split(","):
        resolution, downsample = (int(v) for v in size.split("/"))
        f = forward_flops(resolution, downsample, gpu)
        v, d, t = gpu["vqgan"], gpu["decoder"], gpu["transformer"]
        stages = {
            "vqgan": (v["max_steps"] * v["batch_size"], 3 * (f["enc"] + f["dec"])),
            "decoder": (d["max_steps"] * d["batch_size"], 3 * f["dec"]),
            "decoder encode": (2 * args.images, f["enc"]),
            "tokens": (2 * args.images, f["enc"]),
            "transformer": (t["max_steps"] * t["batch_size"], 3 * f["transformer"]),
        }
        print(
            f"\n## {resolution}x{resolution}, downsample {downsample} ({resolution // downsample}x"
            f"{resolution // downsample} tokens): VQGAN {f['vqgan_params'] / 1e6:.2f}M parameters, transformer "
            f"{f['transformer_params'] / 1e6:.2f}M; forward GFLOPs: encoder {f['enc'] / 1e9:.3f}/image, decoder "
            f"{f['dec'] / 1e9:.3f}/image, transformer {f['transformer'] / 1e9:.3f}/sequence"
        )
        print("| stage | items | GFLOPs/item | total PFLOPs |" + "".join(f" at {m:.0%} |" for m in mfus))
        print("|---|---|---|---|" + "---|" * len(mfus))
        total = 0.0
        for name, (items, per) in stages.items():
            flops = items * per
            total += flops
            times = "".join(f" {flops / (args.peak * 1e12 * m):.1f} s |" for m in mfus)
            print(f"| {name} | {items:,} | {per / 1e9:.3f} | {flops / 1e15:.2f} |{times}")
        times = "".join(f" {total / (args.peak * 1e12 * m) / 60:.1f} min |" for m in mfus)
        print(f"| all | | | {total / 1e15:.2f} |{times}")


if __name__ == "__main__":
    main()
