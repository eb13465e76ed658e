"""Token caches: a folder of images encoded once by a VQGAN, stored as one safetensors file.

A cache holds the tensor ``tokens`` (N,h,w) int16 (h x w: the VQGAN's token grid, 16x16 for 64x64 images) and
metadata: ``kind=tokens``, ``files`` (JSON list of the source file names in sorted order), ``vqgan_sha256``
(fingerprint of the VQGAN's tensors), ``vqgan_config``, ``image_size``, ``num_codebook_vectors`` and ``flip`` ("true"
when horizontally flipped copies were appended: rows N/2..N-1 are the flips of rows 0..N/2-1). Training reads caches
instead of running the VQGAN every step.

It also holds ``code_patch_sums`` (V, 3*p*p) float64 and ``code_patch_counts`` (V,) int64: the sums of the pixel
patches under each code over all rows, from which ``maskgit train`` stores every code's mean look in the
transformer file for known-pixel guidance (:mod:`maskgit_cli.guidance`). Caches made before they existed load
without them.

With ``tokenize --masked-copies K`` (context-corrupted training, docs/decoding.md "Training on what inpainting
sees") it holds, per row, K *masked copies*: ``masked_tokens`` (N,K,h,w) int16, the tokens of the image with the
holes of a generated mask filled gray exactly as inpainting fills them, and ``masked_holes`` (N,K,h,w) uint8, the
tokens those holes touch (the lab's any-pixel rule, no dilation: training dilates). Outside the holes a masked
copy's tokens differ from the clean ones wherever the VQGAN's encoder looks image-wide; ``context_fidelity`` (in
the metadata) is the share of tokens outside the dilated holes that stay equal.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from maskgit_cli.data.images import ImageFolder, image_loader, list_images
from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import HOLE, dilate_token_mask, token_mask_for
from maskgit_cli.errors import MaskgitError, write_error_reason
from maskgit_cli.progress import Bar, progress_bar
from maskgit_cli.runtime import gather_results, init_distributed, shard, vqgan_autocast
from maskgit_cli.vqgan.code_patches import PatchStats
from maskgit_cli.vqgan.model import VQGANConfig
from maskgit_cli.vqgan.resolution import cache_text
from maskgit_cli.weights import (
    config_from_json,
    config_to_json,
    load_model,
    read_metadata,
    read_tensors,
    save_tensors,
    token_fingerprint,
)


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
    masked_tokens: torch.Tensor | None = None  # (N,K,h,w) int64: the tokens of K masked copies of every row
    masked_holes: torch.Tensor | None = None  # (N,K,h,w) bool: the tokens their holes touch (any-pixel rule)
    context_fidelity: float | None = None  # share of tokens outside the dilated holes equal to the clean tokens

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.tokens.shape[1:])

    @property
    def masked_copies(self) -> int:
        return 0 if self.masked_tokens is None else self.masked_tokens.shape[1]


@dataclass
class TokenizeSummary:
    output: str
    images: int
    rows: int
    skipped: list[str]
    grid: tuple[int, int]
    vqgan_sha256: str
    seconds: float
    masked_copies: int = 0
    context_fidelity: float | None = None  # with masked copies: see the module docstring


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
    masked_copies: int = 0,
    mask_seed: int = 0,
) -> TokenizeSummary | None:
    """Encode every image of ``images_dir`` with ``vqgan`` (a VQGAN or its weights file) and write a token cache.

    Deterministic: sorted file order, no augmentation but the optional flips, fp32 nearest-code search
    (bf16 autocast for the encoder on CUDA only). Nothing is written unless the whole folder succeeds.
    An existing ``output`` is replaced only with ``overwrite``, and never when it is an input (checked first).
    ``masked_copies`` K > 0: also the tokens of K masked copies of every row (:func:`masked_copy_masks`).

    Under torchrun each rank encodes its shard of the files (:func:`~maskgit_cli.runtime.shard`) and rank 0 writes
    the cache of a single-process run, the same tensors and metadata, and returns the summary (the other ranks:
    None). The code patch sums are float64 sums of 8-bit pixels, exact in any order while no code sits under more
    than 2^22 patches (about 4 million), so they are the same bits too.
    """
    if masked_copies < 0:
        raise MaskgitError(f"--masked-copies {masked_copies}: must be >= 0")
    rank, world, device = init_distributed(device)
    check_output(output, images_dir, vqgan, overwrite)
    if isinstance(vqgan, (str, Path)):
        vqgan = load_model(vqgan, "vqgan", device)
    cfg = vqgan.config
    dataset = ImageFolder(images_dir, size=cfg.img_resolution, resize=resize, skip_invalid=skip_invalid)
    mine = shard(len(dataset), rank, world)
    vqgan = vqgan.to(device).eval()
    start = time.perf_counter()
    encode = functools.partial(_encode_shard, dataset, mine, vqgan, device, batch_size, num_workers)
    parts = gather_results(lambda: encode(flip, masked_copies, mask_seed, rank == 0, world))
    kept = sorted(i for part in parts for i in part.kept)
    if not kept:
        raise MaskgitError(f"{images_dir}: none of the {len(dataset)} images could be read")
    if rank != 0:
        return None
    tokens, masked, stats = _merge(parts, flip, cfg)
    skipped = sorted(i for part in parts for i in part.skipped)
    files = [dataset.files[i].name for i in kept]
    fingerprint = token_fingerprint(vqgan)
    fidelity = context_fidelity(tokens, *masked) if masked is not None else None
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
        masked,
        mask_seed,
        fidelity,
    )
    return TokenizeSummary(
        str(output),
        len(kept),
        tokens.shape[0],
        [dataset.files[i].name for i in skipped],
        tuple(tokens.shape[1:]),
        fingerprint,
        time.perf_counter() - start,
        masked_copies,
        fidelity,
    )


@dataclass
class _Shard:
    """What one process encoded: its kept and skipped dataset indices, their tokens (as is and, with flips,
    flipped), their masked copies per view (tokens, holes), and its code patch sums."""

    kept: list[int]
    skipped: list[int]
    views: list[torch.Tensor | None]  # (n,h,w) int16 per view (0 = as is, 1 = flipped); None when n = 0
    copies: list[tuple[torch.Tensor, torch.Tensor] | None]  # per view: (n,K,h,w) int16 tokens, bool holes
    sums: torch.Tensor
    counts: torch.Tensor


def _encode_shard(dataset, mine, vqgan, device, batch_size, num_workers, flip, masked_copies, mask_seed, main, world):
    """Encode the images ``mine`` (dataset indices) of ``dataset``: a :class:`_Shard`."""
    cfg = vqgan.config
    subset = dataset if world == 1 else torch.utils.data.Subset(dataset, mine)
    loader = image_loader(subset, batch_size=batch_size, num_workers=num_workers)
    chunks: dict[int, list] = {0: [], 1: []}  # view -> tokens per batch
    copies: dict[int, list] = {0: [], 1: []}  # view -> (tokens, holes) per batch
    kept, skipped = [], []
    amp = vqgan_autocast(device)
    stats = PatchStats(cfg.num_codebook_vectors, cfg.image_channels, cfg.img_resolution // cfg.latent_resolution)
    what = "tokenize" if world == 1 else f"tokenize (rank 0 of {world})"
    bar_context = progress_bar(len(mine), what, unit="img") if main else contextlib.nullcontext(Bar(None, None))
    with bar_context as bar, torch.no_grad():
        for batch in loader:
            skipped += batch.skipped
            if batch.indices:
                images = batch.images.to(device, non_blocking=True)
                for v, view in enumerate((images, images.flip(-1)) if flip else (images,)):
                    with amp:
                        codes = vqgan.encode(view)
                    chunks[v].append(codes.to(torch.int16).cpu())
                    stats.add(view, codes)
                    if masked_copies:
                        holes = masked_copy_masks(batch.indices, v, masked_copies, mask_seed, cfg.img_resolution)
                        copies[v].append(_encode_masked(vqgan, view, holes.to(device), amp))
                kept += batch.indices
            bar.advance(len(batch.indices) + len(batch.skipped))
    views = [torch.cat(chunks[v]) if chunks[v] else None for v in (0, 1)]
    both = [(torch.cat([t for t, _ in copies[v]]), torch.cat([h for _, h in copies[v]])) if copies[v] else None
            for v in (0, 1)]  # fmt: skip
    return _Shard(kept, skipped, views, both, stats.sums, stats.counts)


def _merge(parts: list[_Shard], flip: bool, cfg) -> tuple[torch.Tensor, tuple | None, PatchStats]:
    """The shards as one cache's rows in file order (the flips after all the rows, the masked copies likewise),
    and the code patch sums added up."""
    kept = [i for part in parts for i in part.kept]
    order = torch.tensor(sorted(range(len(kept)), key=kept.__getitem__), dtype=torch.long)

    def rows(get):  # the shards' tensors of one view, in file order
        return torch.cat([get(part) for part in parts if part.kept])[order]

    views = (0, 1) if flip else (0,)
    tokens = torch.cat([rows(lambda part, v=v: part.views[v]) for v in views])
    masked = None
    if any(part.copies[0] is not None for part in parts):
        masked = tuple(torch.cat([rows(lambda part, v=v, k=k: part.copies[v][k]) for v in views]) for k in (0, 1))
    stats = PatchStats(cfg.num_codebook_vectors, cfg.image_channels, cfg.img_resolution // cfg.latent_resolution)
    stats.sums, stats.counts = parts[0].sums.clone(), parts[0].counts.clone()
    for part in parts[1:]:
        stats.sums += part.sums
        stats.counts += part.counts
    return tokens, masked, stats


# Generated mask kinds of the masked copies, in turn: mostly free-form strokes like the lab's, and boxes.
COPY_KINDS = ("stroke", "stroke", "box")


def masked_copy_masks(indices: list[int], view: int, copies: int, seed: int, size: int) -> torch.Tensor:
    """Pixel holes (B,K,size,size) bool of the ``copies`` masked copies of dataset images ``indices`` (``view`` 1:
    their flips): a pure function of (seed, image index, view, copy), so batching and skipped files change nothing."""
    out = np.zeros((len(indices), copies, size, size), dtype=bool)
    for b, i in enumerate(indices):
        for k in range(copies):
            n = (i * 2 + view) * copies + k
            out[b, k] = generate_mask(COPY_KINDS[n % len(COPY_KINDS)], mask_rng(seed, n), size=size) == HOLE
    return torch.from_numpy(out)


def _encode_masked(vqgan, images: torch.Tensor, holes: torch.Tensor, amp) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (B,K,h,w) int16, token holes (B,K,h,w) bool) of the images encoded with each copy's holes exactly as
    inpainting encodes them (:meth:`~maskgit_cli.vqgan.model.VQGAN.encode_masked`)."""
    B, K = holes.shape[:2]
    many = images.repeat_interleave(K, 0)
    flat = holes.flatten(0, 1)
    with amp:
        codes = vqgan.encode_masked(many, flat)
    latent = vqgan.config.latent_resolution
    token_holes = token_mask_for(flat, latent, "any", 0)
    return codes.to(torch.int16).cpu().view(B, K, latent, latent), token_holes.cpu().view(B, K, latent, latent)


def context_counts(
    tokens: torch.Tensor, masked_tokens: torch.Tensor, masked_holes: torch.Tensor, dilate: int = 1
) -> tuple[int, int]:
    """(tokens outside the regenerated region equal to the clean image's, tokens outside it) over masked copies
    ``masked_tokens`` (N,K,h,w) of the clean ``tokens`` (N,h,w) whose holes touch ``masked_holes`` (N,K,h,w); the
    regenerated region is the holes' tokens and ``dilate`` rings (inpainting's ``--dilate``)."""
    regenerated = dilate_token_mask(masked_holes.flatten(0, 1), dilate).view_as(masked_holes)
    same = masked_tokens.long() == tokens.long()[:, None]
    outside = ~regenerated
    return int((same & outside).sum()), int(outside.sum())


def context_fidelity(
    tokens: torch.Tensor, masked_tokens: torch.Tensor, masked_holes: torch.Tensor, dilate: int = 1
) -> float:
    """The share of the tokens outside the regenerated region (holes + ``dilate`` rings; inpainting's default for
    image-wide encoders is 1) of every masked copy that equal the clean image's tokens (1.0: holes change nothing
    else)."""
    same, outside = context_counts(tokens, masked_tokens, masked_holes, dilate)
    return same / max(outside, 1)


def check_output(output, images_dir, vqgan, overwrite: bool = False) -> None:
    """Refuse, before any work, an ``-o`` that is a folder, that is an input (the ``--vqgan`` file or an image of
    ``images_dir``, even with ``overwrite``), that exists without ``overwrite``, or, with it, that is not a token
    cache (nothing is deleted that the tool did not make)."""
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
    try:
        ours = read_metadata(output).get("kind") == "tokens"
    except MaskgitError:
        ours = False
    if not ours:
        raise MaskgitError(
            f"-o {output}: not a token cache; --overwrite replaces only a cache `maskgit tokenize` wrote: choose "
            "another output file"
        )


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
    masked: tuple[torch.Tensor, torch.Tensor] | None = None,
    mask_seed: int = 0,
    fidelity: float | None = None,
) -> None:
    """Atomically write a token cache (tokens (N,h,w) stored as int16; codebooks up to 32768 codes), with the
    masked copies ``masked`` = (tokens (N,K,h,w), holes (N,K,h,w)) when given. A failed write (a full disk) is one
    MaskgitError naming ``path``; the file is written whole or not at all (a temporary file beside it, renamed)."""
    if num_codebook_vectors > 32768:
        raise MaskgitError(f"{num_codebook_vectors} codes do not fit the int16 token cache")
    tensors = {"tokens": tokens.to(torch.int16)}
    if patch_stats is not None:
        tensors.update(code_patch_sums=patch_stats.sums, code_patch_counts=patch_stats.counts)
    copies = {}
    if masked is not None:
        tensors.update(masked_tokens=masked[0].to(torch.int16), masked_holes=masked[1].to(torch.uint8))
        copies = {
            "masked_copies": str(masked[0].shape[1]),
            "mask_seed": str(mask_seed),
            "copy_kinds": json.dumps(COPY_KINDS),
            "context_fidelity": f"{fidelity:.6f}" if fidelity is not None else "",
        }
    metadata = {
        "kind": "tokens",
        "files": json.dumps(list(files)),
        "vqgan_sha256": vqgan_sha256,
        "vqgan_config": vqgan_config_json,
        "image_size": str(image_size),
        "num_codebook_vectors": str(num_codebook_vectors),
        "flip": "true" if flip else "false",
        "patch_size": str(patch_stats.patch) if patch_stats is not None else "",
        **copies,
    }
    try:
        save_tensors(path, tensors, metadata)
    except (OSError, SafetensorError) as e:
        reason = write_error_reason(e)
        raise MaskgitError(f"{path}: cannot write the token cache ({reason}); nothing was written") from None


def load_token_cache(path, expect_vqgan_sha256: str | None = None) -> TokenCache:
    """Read a token cache; with ``expect_vqgan_sha256`` a cache made by another VQGAN is an error naming both."""
    meta = read_metadata(path, "a token cache file (made by `maskgit tokenize`)")
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
        if "masked_tokens" in tensors:
            cache.masked_tokens = tensors["masked_tokens"].long()
            cache.masked_holes = tensors["masked_holes"].bool()
            cache.context_fidelity = float(meta["context_fidelity"]) if meta.get("context_fidelity") else None
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        raise MaskgitError(f"{path}: token cache metadata is incomplete or invalid ({e})") from None
    check_token_cache(cache, meta)
    if expect_vqgan_sha256 is not None:
        check_made_by(cache, expect_vqgan_sha256)
    return cache


def check_made_by(cache: TokenCache, vqgan_sha256: str) -> None:
    """A cache made by another VQGAN than ``vqgan_sha256`` (a token fingerprint) is an error naming both."""
    if cache.vqgan_sha256 != vqgan_sha256:
        raise MaskgitError(
            f"{cache.path}: tokens were made by VQGAN {cache.vqgan_sha256[:12]}, but this VQGAN is "
            f"{vqgan_sha256[:12]}; re-run `maskgit tokenize` with the same VQGAN"
        )


def check_token_cache(cache: TokenCache, meta: dict[str, str]) -> None:
    """A loaded cache's tokens against its own metadata (one MaskgitError naming the cache and the problem):
    rows = files (x2 with flips), the grid = the VQGAN's latent resolution, every id a code (0..V-1; the
    transformer's mask id V is not data), the code patch stats one row per code."""
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
    if cache.masked_tokens is not None:
        m, h = cache.masked_tokens, cache.masked_holes
        fits = h is not None and m.ndim == 4 and m.shape == h.shape
        if not fits or m.shape[0] != len(tokens) or m.shape[2:] != tokens.shape[1:]:
            got = f"{tuple(m.shape)} / {None if h is None else tuple(h.shape)}"
            raise bad(f"masked copies {got} do not fit its {tuple(tokens.shape)} tokens")
        if int(m.min()) < 0 or int(m.max()) >= v:
            raise bad(f"masked copies hold token ids outside 0..{v - 1}")


def check_same_grid(a: TokenCache, b: TokenCache) -> None:
    """Caches trained on together (train and validation) hold token grids of one size: one line naming both."""
    if a.grid != b.grid or a.image_size != b.image_size:
        raise MaskgitError(
            f"{b.path} holds {cache_text(b)} but {a.path} holds {cache_text(a)}: tokenize both with the same VQGAN"
        )


def check_same_vqgan(a: TokenCache, b: TokenCache) -> None:
    """Train and validation caches must come from the same VQGAN."""
    if a.vqgan_sha256 != b.vqgan_sha256:
        raise MaskgitError(
            f"{a.path} and {b.path} were made by different VQGANs ({a.vqgan_sha256[:12]} vs {b.vqgan_sha256[:12]})"
        )
