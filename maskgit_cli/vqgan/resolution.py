"""Image sizes and token grids: the VQGAN presets at any resolution, and how a size mismatch is said.

A VQGAN encodes R x R images (``--resolution R``, a power of two from 32 to 512) into an (R/f) x (R/f) grid of
tokens, each token standing for an f x f pixel patch (``--downsample f``: 4, 8 or 16). The lab's VQGAN and the shipped
weights are R = 64, f = 4: 16x16 tokens. Everything after the VQGAN takes the grid from it: token caches, the
transformer's positional table, the token masks, guidance's code patches, the windows of images of any size.

:func:`scale_preset` makes a preset build for any R and f: the preset's two down-sampling steps (encoder) and
up-sampling steps (decoder) stay where they are, each further step gets a stage of its own at the narrow end (the
encoder's last channel width once more, then a step; the decoder's first, then a step), and self-attention, where
the preset has it, runs at the token grid. R = 64, f = 4 gives each preset exactly as it is.

Torch-free: the command line reads the accepted values and the defaults from here.
"""

from __future__ import annotations

import math
from dataclasses import replace

from maskgit_cli.errors import MaskgitError

RESOLUTIONS = (32, 64, 128, 256, 512)  # --resolution: the image side R
DOWNSAMPLES = (4, 8, 16)  # --downsample: the pixels f of a token's side; the token grid is R/f
DEFAULT_RESOLUTION = 64  # the lab's and the shipped weights': 64x64 images ...
DEFAULT_DOWNSAMPLE = 4  # ... and 16x16 tokens of 4x4 pixels
MIN_GRID = 4  # tokens per side at least: a smaller grid leaves the transformer almost nothing to predict from


def check_resolution(resolution: int, downsample: int) -> None:
    """One error line for a resolution, downsampling factor or token grid that no VQGAN is built for."""
    if resolution not in RESOLUTIONS:
        raise MaskgitError(
            f"--resolution {resolution}: expected a power of two from {RESOLUTIONS[0]} to {RESOLUTIONS[-1]} "
            f"({', '.join(map(str, RESOLUTIONS))})"
        )
    if downsample not in DOWNSAMPLES:
        raise MaskgitError(f"--downsample {downsample}: expected one of {', '.join(map(str, DOWNSAMPLES))}")
    grid = resolution // downsample
    if grid < MIN_GRID:
        raise MaskgitError(
            f"--resolution {resolution} --downsample {downsample}: a {grid}x{grid} token grid is too small "
            f"(at least {MIN_GRID}x{MIN_GRID}: a smaller --downsample)"
        )


def scale_preset(config, resolution: int = DEFAULT_RESOLUTION, downsample: int = DEFAULT_DOWNSAMPLE):
    """``config`` (a 64x64, f = 4 preset's :class:`~maskgit_cli.vqgan.model.VQGANConfig`) built for ``resolution``
    x ``resolution`` images and tokens of ``downsample`` x ``downsample`` pixels (module docstring)."""
    check_resolution(resolution, downsample)
    extra = int(math.log2(downsample)) - len(config.enc_downsample_after)  # steps beyond the preset's: 0, 1 or 2
    enc = config.enc_channels + (config.enc_channels[-1],) * extra
    dec = config.dec_channels + (config.dec_channels[-1],) * extra
    grid = resolution // downsample
    return replace(
        config,
        img_resolution=resolution,
        latent_resolution=grid,
        enc_channels=enc,
        enc_downsample_after=config.enc_downsample_after + tuple(range(len(config.enc_channels) - 1, len(enc) - 1)),
        dec_channels=dec,
        dec_upsample_after=tuple(range(extra)) + tuple(i + extra for i in config.dec_upsample_after),
        attn_resolutions=(grid,) if config.attn_resolutions else (),
    )


def downsample_of(config) -> int:
    """The pixels of a token's side: image resolution / token grid."""
    return config.img_resolution // config.latent_resolution


def size_note(config) -> str:
    """What a log line adds for a VQGAN of another size than the lab's: ", 128x128 images -> 32x32 tokens"."""
    r, g = config.img_resolution, config.latent_resolution
    return "" if (r, r // g) == (DEFAULT_RESOLUTION, DEFAULT_DOWNSAMPLE) else f", {r}x{r} images -> {g}x{g} tokens"


def tokens_text(count: int) -> str:
    """A transformer's tokens per image as people read them: "16x16 tokens (256)" (a square grid), else "N tokens"."""
    side = math.isqrt(count)
    return f"{side}x{side} tokens ({count})" if side * side == count else f"{count} tokens"


def grid_text(config) -> str:
    """A VQGAN's token grid and what it encodes: "32x32 (128x128 images, downsample 4)"."""
    g, r = config.latent_resolution, config.img_resolution
    return f"{g}x{g} ({r}x{r} images, downsample {downsample_of(config)})"


def cache_text(cache) -> str:
    """A token cache's grids: "32x32 token grids (128x128 images)"."""
    h, w = cache.grid
    return f"{h}x{w} token grids ({cache.image_size}x{cache.image_size} images)"


def check_partners(transformer_config, vqgan_config) -> None:
    """A transformer and a VQGAN of different token grids, refused in one line that names both."""
    if transformer_config.num_image_tokens != vqgan_config.tokens_per_image:
        raise MaskgitError(
            f"the transformer expects {tokens_text(transformer_config.num_image_tokens)} but the VQGAN makes "
            f"{grid_text(vqgan_config)}: pass the VQGAN it was trained with"
        )
