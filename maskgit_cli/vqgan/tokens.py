"""Token caches: a folder of images encoded once by a VQGAN, stored as one safetensors file.

A cache holds the tensor ``tokens`` (N,h,w) int16 and metadata: ``kind=tokens``, ``files`` (JSON list of the
source file names in sorted order), ``vqgan_sha256`` (fingerprint of the VQGAN's tensors), ``vqgan_config``,
``image_size``, ``num_codebook_vectors`` and ``flip`` ("true" when horizontally flipped copies were appended:
rows N/2..N-1 are the flips of rows 0..N/2-1). Training reads caches instead of running the VQGAN every step.

It also holds ``code_patch_sums`` (V, 3*p*p) float64 and ``code_patch_counts`` (V,) int64: the sums of the pixel
patches under each code over all rows, from which ``maskgit train`` stores every code's mean look in the
transformer file for known-pixel guidance (:mod:`maskgit_cli.guidance`). Caches made before they existed load
without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from maskgit_cli.data.images import ImageFolder, image_loader
from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import progress_bar
from maskgit_cli.runtime import autocast
from maskgit_cli.vqgan.code_patches import PatchStats
from maskgit_cli.weights import config_to_json, load_model, model_fingerprint, read_metadata, read_tensors, save_tensors


@dataclass
class TokenCache:
    tokens: torch.Tensor  # (N,h,w) int64
    files: list[str]
    vqgan_sha256: str
    vqgan_config: dict
    image_size: int
    num_codebook_vectors: int
    flip: bool
    path: str = ""
    patch_stats: PatchStats | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.tokens.shape[1:])


@dataclass
class TokenizeSummary:
    output: str
    images: int
    rows: int
    skipped: list[str]
    grid: tuple[int, int]
    vqgan_sha256: str
    seconds: float


def tokenize_folder(
    images_dir,
    vqgan,
    output,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    flip: bool = False,
    skip_invalid: bool = False,
    resize: bool = False,
    num_workers: int | None = None,
    overwrite: bool = False,
) -> TokenizeSummary:
    """Encode every image of ``images_dir`` with ``vqgan`` (a VQGAN or its weights file) and write a token cache.

    Deterministic: sorted file order, no augmentation but the optional flips, fp32 nearest-code search
    (bf16 autocast for the encoder on CUDA only). Nothing is written unless the whole folder succeeds.
    An existing ``output`` is replaced only with ``overwrite``, and never when it is an input (checked first).
    """
    import time

    check_output(output, images_dir, vqgan, overwrite)
    device = torch.device(device)
    if isinstance(vqgan, (str, Path)):
        vqgan = load_model(vqgan, "vqgan", device)
    cfg = vqgan.config
    dataset = ImageFolder(images_dir, size=cfg.img_resolution, resize=resize, skip_invalid=skip_invalid)
    loader = image_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    vqgan = vqgan.to(device).eval()
    start = time.perf_counter()
    chunks, flipped, kept, skipped = [], [], [], []
    amp = autocast(device, "auto")
    stats = PatchStats(cfg.num_codebook_vectors, cfg.image_channels, cfg.img_resolution // cfg.latent_resolution)
    with progress_bar(len(dataset), "tokenize", unit="img") as bar, torch.no_grad():
        for batch in loader:
            skipped += batch.skipped
            if batch.indices:
                images = batch.images.to(device, non_blocking=True)
                for view, out in ((images, chunks), (images.flip(-1), flipped)) if flip else ((images, chunks),):
                    with amp:
                        codes = vqgan.encode(view)
                    out.append(codes.to(torch.int16).cpu())
                    stats.add(view, codes)
                kept += batch.indices
            bar.advance(len(batch.indices) + len(batch.skipped))
    if not kept:
        raise MaskgitError(f"{images_dir}: none of the {len(dataset)} images could be read")
    tokens = torch.cat(chunks + flipped)
    files = [dataset.files[i].name for i in kept]
    fingerprint = model_fingerprint(vqgan)
    save_token_cache(
        output,
        tokens,
        files,
        fingerprint,
        config_to_json(cfg),
        cfg.img_resolution,
        cfg.num_codebook_vectors,
        flip,
        stats,
    )
    return TokenizeSummary(
        str(output),
        len(kept),
        tokens.shape[0],
        [dataset.files[i].name for i in skipped],
        tuple(tokens.shape[1:]),
        fingerprint,
        time.perf_counter() - start,
    )


def check_output(output, images_dir, vqgan, overwrite: bool = False) -> None:
    """Refuse, before any work, an ``-o`` that is a folder, that is an input (the ``--vqgan`` file or an image of
    ``images_dir``, even with ``overwrite``), or that exists without ``overwrite``."""
    from maskgit_cli.data.images import list_images

    output = Path(output)
    if output.is_dir():
        example = output / "train.tokens"
        raise MaskgitError(f"-o {output}: is a folder; give the token cache's file name, e.g. {example}")
    if not output.exists():
        return
    st = output.stat()
    same = (st.st_dev, st.st_ino)
    if isinstance(vqgan, (str, Path)) and Path(vqgan).exists():
        v = Path(vqgan).stat()
        if (v.st_dev, v.st_ino) == same:
            raise MaskgitError(f"-o {output}: is the --vqgan file, an input; choose another output file")
    if Path(images_dir).is_dir():
        for f in list_images(images_dir):
            i = f.stat()
            if (i.st_dev, i.st_ino) == same:
                raise MaskgitError(f"-o {output}: is the image {f.name} of {images_dir}, an input; choose another file")
    if not overwrite:
        raise MaskgitError(f"-o {output}: already exists; pass --overwrite to replace it")


def save_token_cache(
    path,
    tokens: torch.Tensor,
    files: list[str],
    vqgan_sha256: str,
    vqgan_config_json: str,
    image_size: int,
    num_codebook_vectors: int,
    flip: bool = False,
    patch_stats: PatchStats | None = None,
) -> None:
    """Atomically write a token cache (tokens (N,h,w) stored as int16; codebooks up to 32768 codes)."""
    if num_codebook_vectors > 32768:
        raise MaskgitError(f"{num_codebook_vectors} codes do not fit the int16 token cache")
    tensors = {"tokens": tokens.to(torch.int16)}
    if patch_stats is not None:
        tensors.update(code_patch_sums=patch_stats.sums, code_patch_counts=patch_stats.counts)
    save_tensors(
        path,
        tensors,
        {
            "kind": "tokens",
            "files": json.dumps(list(files)),
            "vqgan_sha256": vqgan_sha256,
            "vqgan_config": vqgan_config_json,
            "image_size": str(image_size),
            "num_codebook_vectors": str(num_codebook_vectors),
            "flip": "true" if flip else "false",
            "patch_size": str(patch_stats.patch) if patch_stats is not None else "",
        },
    )


def load_token_cache(path, expect_vqgan_sha256: str | None = None) -> TokenCache:
    """Read a token cache; with ``expect_vqgan_sha256`` a cache made by another VQGAN is an error naming both."""
    meta = read_metadata(path)
    if meta.get("kind") != "tokens":
        raise MaskgitError(f"{path}: not a token cache (kind {meta.get('kind')!r}); make one with `maskgit tokenize`")
    tensors = read_tensors(path)
    if "tokens" not in tensors or tensors["tokens"].ndim != 3:
        raise MaskgitError(f"{path}: token cache has no (N,h,w) 'tokens' tensor")
    raw = tensors["tokens"]
    if raw.dtype.is_floating_point or raw.dtype.is_complex or raw.dtype == torch.bool:
        raise MaskgitError(f"{path}: token cache's 'tokens' tensor is {raw.dtype}, not integer code ids")
    try:
        cache = TokenCache(
            tokens=tensors["tokens"].long(),
            files=json.loads(meta["files"]),
            vqgan_sha256=meta["vqgan_sha256"],
            vqgan_config=json.loads(meta["vqgan_config"]),
            image_size=int(meta["image_size"]),
            num_codebook_vectors=int(meta["num_codebook_vectors"]),
            flip=meta["flip"] == "true",
            path=str(path),
        )
        if "code_patch_sums" in tensors and meta.get("patch_size"):
            cache.patch_stats = PatchStats.from_tensors(
                tensors["code_patch_sums"], tensors["code_patch_counts"], int(meta["patch_size"])
            )
    except (KeyError, ValueError, TypeError) as e:
        raise MaskgitError(f"{path}: token cache metadata is incomplete or invalid ({e})") from None
    check_token_cache(cache, meta)
    if expect_vqgan_sha256 is not None and cache.vqgan_sha256 != expect_vqgan_sha256:
        raise MaskgitError(
            f"{path}: tokens were made by VQGAN {cache.vqgan_sha256[:12]}, but this VQGAN is "
            f"{expect_vqgan_sha256[:12]}; re-run `maskgit tokenize` with the same VQGAN"
        )
    return cache


def check_token_cache(cache: TokenCache, meta: dict[str, str]) -> None:
    """A loaded cache's tokens against its own metadata (one MaskgitError naming the cache and the problem):
    rows = files (x2 with flips), the grid = the VQGAN's latent resolution, every id a code (0..V-1; the
    transformer's mask id V is not data), the code patch stats one row per code."""
    from maskgit_cli.vqgan.model import VQGANConfig
    from maskgit_cli.weights import config_from_json

    path, tokens, v = cache.path, cache.tokens, cache.num_codebook_vectors

    def bad(problem: str):
        return MaskgitError(f"{path}: token cache {problem}; re-run `maskgit tokenize`")

    if not isinstance(cache.files, list) or not all(isinstance(f, str) for f in cache.files):
        raise bad("metadata 'files' is not a list of file names")
    if meta["flip"] not in ("true", "false"):
        raise bad(f"metadata 'flip' is {meta['flip']!r}, not true or false")
    if not 1 <= v <= 32768:
        raise bad(f"metadata num_codebook_vectors is {v}, not 1..32768")
    if cache.image_size < 1:
        raise bad(f"metadata image_size is {cache.image_size}")
    if not isinstance(cache.vqgan_config, dict):
        raise bad("metadata vqgan_config is not a JSON object")
    try:
        config_from_json(VQGANConfig, meta["vqgan_config"], "vqgan_config")
    except MaskgitError as e:
        raise bad(f"metadata is invalid ({e})") from None
    rows = len(cache.files) * (2 if cache.flip else 1)
    if len(tokens) == 0:
        raise bad("holds no token grids")
    if len(tokens) != rows:
        flips = " x2 for the flips" if cache.flip else ""
        raise bad(f"holds {len(tokens)} token grids but names {len(cache.files)} files{flips} ({rows} expected)")
    stated = cache.vqgan_config
    if "latent_resolution" in stated and cache.grid != (stated["latent_resolution"],) * 2:
        r = stated["latent_resolution"]
        raise bad(f"grids are {cache.grid[0]}x{cache.grid[1]} but its VQGAN's latent resolution is {r}x{r}")
    if "img_resolution" in stated and cache.image_size != stated["img_resolution"]:
        raise bad(f"image_size {cache.image_size} differs from its VQGAN's img_resolution {stated['img_resolution']}")
    if "num_codebook_vectors" in stated and v != stated["num_codebook_vectors"]:
        raise bad(f"num_codebook_vectors {v} differs from its VQGAN's {stated['num_codebook_vectors']}")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= v:
        n = int(((tokens < 0) | (tokens >= v)).sum())
        raise bad(f"holds {n} token ids outside 0..{v - 1} (min {lo}, max {hi}; {v} codes)")
    if cache.patch_stats is not None and len(cache.patch_stats.counts) != v:
        raise bad(f"code patch stats have {len(cache.patch_stats.counts)} rows for {v} codes")


def check_same_vqgan(a: TokenCache, b: TokenCache) -> None:
    """Train and validation caches must come from the same VQGAN."""
    if a.vqgan_sha256 != b.vqgan_sha256:
        raise MaskgitError(
            f"{a.path} and {b.path} were made by different VQGANs ({a.vqgan_sha256[:12]} vs {b.vqgan_sha256[:12]})"
        )
