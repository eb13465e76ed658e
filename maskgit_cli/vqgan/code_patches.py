"""Code patches: the mean look of every VQGAN code, for known-pixel guidance (docs/decoding.md, "Known-pixel guidance").

``maskgit tokenize`` sums the pixel patches under every code of the training images (:class:`PatchStats`, stored
in the token cache); ``maskgit train`` stores their means in the transformer file (``aux.code_patches``, with
the VQGAN's fingerprint). Files without them fall back to the patch the VQGAN decodes from a grid filled with one
code (:func:`vqgan_code_patches`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskgit_cli.progress import progress_bar
from maskgit_cli.runtime import vqgan_autocast
from maskgit_cli.weights import check_finite, read_aux_tensors, read_metadata

CODE_PATCHES_KEY = "aux.code_patches"  # (V,3,p,p) float32 in a transformer file


@dataclass
class CodePatches:
    """The mean pixel patch of every code, and where it came from."""

    patches: torch.Tensor  # (V,3,p,p) float32 in [0,1]
    source: str  # "training images" or "VQGAN decode"
    vqgan_sha256: str | None = None  # the VQGAN whose codes these are (None: not recorded)


def to_patches(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B,C,H,W) -> (B, (H/p)*(W/p), C*p*p): the pixels under each token, tokens in raster order."""
    B, C, H, W = images.shape
    x = images.unfold(2, patch, patch).unfold(3, patch, patch)  # B,C,h,w,p,p
    return x.permute(0, 2, 3, 1, 4, 5).reshape(B, (H // patch) * (W // patch), C * patch * patch)


class PatchStats:
    """Running sums of the pixel patches under each code (what ``maskgit tokenize`` stores in a token cache)."""

    def __init__(self, num_codes: int, channels: int, patch: int):
        self.patch = patch
        self.sums = torch.zeros(num_codes, channels * patch * patch, dtype=torch.float64)
        self.counts = torch.zeros(num_codes, dtype=torch.int64)

    @classmethod
    def from_tensors(cls, sums: torch.Tensor, counts: torch.Tensor, patch: int) -> PatchStats:
        """Stats read back from a token cache; ValueError when the shapes do not fit together."""
        stats = cls(len(sums), sums.shape[1] // patch**2, patch)
        if stats.sums.shape != sums.shape or counts.shape != stats.counts.shape:
            raise ValueError(f"code patch sums {tuple(sums.shape)} / counts {tuple(counts.shape)} do not fit")
        stats.sums, stats.counts = sums.double(), counts.long()
        return stats

    def add(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        """images (B,C,H,W) in [0,1], tokens (B,h,w): the VQGAN's codes of exactly these images."""
        ids = tokens.reshape(-1).long().cpu()
        x = to_patches(images.detach().float().cpu(), self.patch).reshape(len(ids), -1).double()
        self.sums.index_add_(0, ids, x)
        self.counts.index_add_(0, ids, torch.ones_like(ids))

    def means(self, fallback: torch.Tensor | None = None) -> torch.Tensor:
        """(V,C,p,p) float32 mean patches; codes never seen take ``fallback`` (V,C,p,p) or mid-gray."""
        means = self.sums / self.counts.clamp_min(1)[:, None].double()
        p = self.patch
        means = means.float().view(len(means), -1, p, p)
        unseen = self.counts == 0
        if unseen.any():
            means[unseen] = fallback[unseen].float() if fallback is not None else 0.5
        return means


# The side of the one-code grids decoded for the code patches: the lab's full grid; larger grids decode this much
# only (the centre is as far from the borders, and a 128x128 grid of 512x512 images would take gigabytes a batch).
PATCH_GRID = 16


@torch.no_grad()
def vqgan_code_patches(vqgan, batch_size: int = 64) -> torch.Tensor:
    """(V,3,p,p): the centre patch of the image the VQGAN decodes from a grid filled with one code (p: the VQGAN's
    downsampling factor)."""
    cfg = vqgan.config
    h, p = min(cfg.latent_resolution, PATCH_GRID), cfg.img_resolution // cfg.latent_resolution
    device = next(vqgan.parameters()).device
    c = (h // 2) * p
    out = []
    # Grids of at least 16x16 where the VQGAN makes them: on smaller ones the borders reach the centre (8x8 tokens:
    # 4 levels of 255 off on average).
    with progress_bar(cfg.num_codebook_vectors, "code patches", unit="code") as bar:
        for start in range(0, cfg.num_codebook_vectors, batch_size):
            codes = torch.arange(start, min(start + batch_size, cfg.num_codebook_vectors), device=device)
            with vqgan_autocast(device):
                images = vqgan.decode(codes[:, None, None].expand(-1, h, h)).float()
            out.append(images[:, :, c : c + p, c : c + p].clamp(0, 1).cpu())
            bar.advance(len(codes))
    return torch.cat(out)


def stored_with(cache) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) a transformer file trained on the token cache ``cache`` stores for guidance."""
    tensors = {CODE_PATCHES_KEY: cache.patch_stats.means()} if cache.patch_stats is not None else {}
    return tensors, {"vqgan_sha256": cache.vqgan_sha256}


def read_code_patches(path) -> CodePatches | None:
    """The code patches stored in a transformer file by ``maskgit train``, or None (older or converted files)."""
    aux = read_aux_tensors(path)
    if CODE_PATCHES_KEY not in aux:
        return None
    check_finite({CODE_PATCHES_KEY: aux[CODE_PATCHES_KEY]}, str(path), "code patches")
    return CodePatches(aux[CODE_PATCHES_KEY].float(), "training images", read_metadata(path).get("vqgan_sha256"))
