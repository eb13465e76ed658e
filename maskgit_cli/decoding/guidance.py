"""Known-pixel guidance: the pixels a regenerated token still shows help choose its code.

A token is regenerated when any of its pixels is a hole (the lab's rule) or when it lies next to one
(``--dilate``), so most regenerated tokens still show known pixels: along a thin stroke, nearly all of them.
The transformer alone never sees those pixels. Guidance adds their log-likelihood to the transformer's logits,
so that decoding samples from p(code | context) * p(known pixels | code):

    logits[b, i, k] += -strength * sum over the known pixels x of token i of ||x - patch_k||^2   (RGB in [0, 1])

``patch_k`` (3,p,p) is the mean look of code k: the average pixel patch over the training images wherever the
VQGAN chose k (gathered by ``maskgit tokenize`` and stored in the transformer file by ``maskgit train``), or,
for files that lack them, the patch the VQGAN decodes from a grid filled with k. A Gaussian with variance
1/(2 strength) per channel: strength 50 = a standard deviation of 0.1 (25 of 255 levels). Tokens whose pixels
are all holes get no bias; strength 0 turns guidance off (the lab's decoding).
"""

from __future__ import annotations

from pathlib import Path

import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import log
from maskgit_cli.vqgan.code_patches import CodePatches, to_patches, vqgan_code_patches
from maskgit_cli.weights import (
    check_finite,
    model_fingerprint,
    read_metadata,
    read_tensors,
    save_tensors,
    token_fingerprint,
)


def known_pixel_bias(images: torch.Tensor, holes: torch.Tensor, patches: torch.Tensor, strength: float) -> torch.Tensor:
    """(B,L,V) float32 logit bias from ``images`` (B,3,H,W) in [0,1], ``holes`` (B,H,W) bool and ``patches``.

    bias[b,i,k] = -strength * sum over token i's known pixels and channels of (x - patches[k])^2, computed in
    float64 (|x|^2 - 2 x.P + |P|^2 restricted to known pixels) so that it does not depend on the batch; never below
    -:data:`BIAS_FLOOR`.
    """
    V, C, p, _ = patches.shape
    x = to_patches(images.double(), p)  # B,L,C*p*p
    known = to_patches((~holes).double()[:, None].expand(-1, C, -1, -1), p)  # B,L,C*p*p (1 = known)
    P = patches.to(device=images.device, dtype=torch.float64).reshape(V, -1)
    kx = known * x
    dist = (kx * x).sum(-1, keepdim=True) - 2 * kx @ P.T + known @ (P * P).T
    dist = dist.clamp_min(0)
    bias = -strength * dist
    # An absurd strength (e.g. 1e308) would make every logit -inf: such tokens' biases are scaled down to end at
    # -BIAS_FLOOR, finite in float32, keeping their order by distance (the draw tends to the nearest patches).
    too_strong = bias.amin(-1, keepdim=True) < -BIAS_FLOOR
    if too_strong.any():
        bias = torch.where(too_strong, -BIAS_FLOOR * dist / dist.amax(-1, keepdim=True), bias)
    return bias.float()


BIAS_FLOOR = 1e30  # the most negative bias: finite in float32, with room for the logits and a temperature


def code_patches_for(vqgan, given: CodePatches, vqgan_sha256: str | None = None) -> CodePatches:
    """``given`` patches, checked against the VQGAN they will be compared with (shape; the VQGAN they were made
    with, when recorded; ``vqgan_sha256``: the VQGAN's token fingerprint, if already computed)."""
    cfg = vqgan.config
    p = cfg.img_resolution // cfg.latent_resolution
    expected = (cfg.num_codebook_vectors, cfg.image_channels, p, p)
    if tuple(given.patches.shape) != expected:
        raise MaskgitError(
            f"the transformer's code patches have shape {tuple(given.patches.shape)}, but this VQGAN needs "
            f"{expected}: they were not made with this VQGAN"
        )
    if not torch.isfinite(given.patches).all():
        raise MaskgitError(f"the code patches ({given.source}) hold NaN or infinite values")
    if given.vqgan_sha256 and given.vqgan_sha256 != (actual := vqgan_sha256 or token_fingerprint(vqgan)):
        raise MaskgitError(
            f"the transformer's code patches were made with VQGAN {given.vqgan_sha256[:12]}, but this VQGAN is "
            f"{actual[:12]}: pass the VQGAN it was trained with (or --pixel-guidance 0)"
        )
    return given


def fallback_code_patches(vqgan, transformer, transformer_path, vqgan_sha256: str, normalization: str) -> CodePatches:
    """Code patches decoded from the VQGAN, for a transformer file that carries none (e.g. a converted lab
    checkpoint without ``--tokens``): 1,024 decodes, minutes for the lab's VQGAN on a CPU, so they are computed once
    and cached beside the transformer file (``NAME.code-patches.safetensors``), keyed by both models' fingerprints
    and the normalization. An unwritable folder only costs the cache."""
    key = {
        "transformer_sha256": model_fingerprint(transformer),
        "vqgan_sha256": vqgan_sha256,
        "normalization": normalization,
    }
    cache = Path(transformer_path).with_suffix(".code-patches.safetensors") if transformer_path is not None else None
    if cache is not None and cache.is_file():
        try:
            meta = read_metadata(cache)
            if all(meta.get(k) == v for k, v in key.items()):
                patches = read_tensors(cache)["code_patches"].float()
                check_finite({"code_patches": patches}, str(cache), "code patches")
                log(f"known-pixel guidance: code patches decoded from the VQGAN, cached in {cache}")
                return CodePatches(patches, f"VQGAN decode (cached in {cache.name})", None)
        except Exception:  # a damaged or foreign cache file is simply recomputed
            pass
    log(
        "known-pixel guidance: the transformer file has no code patches, decoding them from the VQGAN once "
        "(files from `maskgit train` or `maskgit convert-transformer --tokens` carry them)"
    )
    patches = vqgan_code_patches(vqgan)
    if cache is not None:
        try:
            save_tensors(cache, {"code_patches": patches}, {"kind": "code-patches", **key})
            log(f"cached the code patches in {cache}")
        except OSError as e:
            log(
                f"could not cache the code patches in {cache} ({e.strerror or e}); they will be decoded again next time"
            )
    return CodePatches(patches, "VQGAN decode", None)
