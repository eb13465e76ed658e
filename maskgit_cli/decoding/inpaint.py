"""Inpainting a batch of model-size images: masked images + holes -> VQGAN tokens -> iterative decoding -> images.

Pipeline per batch (docs/data.md, "Masks"; docs/decoding.md, "The decoding rule"):
  1. holes are filled with gray 128 (a no-op for the lab's masked images) and the image is VQGAN-encoded;
  2. pixel mask -> token mask (``any`` = the lab's rule: a token is regenerated if any of its pixels is a
     hole; ``majority``), then ``dilate`` extra rings of tokens: tokens next to a hole were encoded from the
     gray fill and come out wrong, so regenerating them too usually helps;
  3. :func:`maskgit_cli.decode.decode_tokens` fills the masked tokens under the schedule; with
     ``pixel_guidance`` > 0 the known pixels inside each regenerated token weigh in on its code
     (:mod:`maskgit_cli.guidance`);
  4. the VQGAN decodes the final tokens (``draws`` samples of them, averaged; and, only for images whose step grids are
     requested, the predictions after every step); with ``composite`` the known pixels of the input are pasted back and
     the holes Poisson-blended into them (``blend``, :func:`finish`, :mod:`maskgit_cli.decoding.blend`) and pulled
     toward a smooth fill where the transformer was unsure (``fill`` smooth-prior).

The lab's FID numbers were made without compositing (``composite=False``). Images of any size and the Python API:
:mod:`maskgit_cli.decoding.pipeline`; folders: :mod:`maskgit_cli.decoding.folders`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from maskgit_cli.data.masks import token_mask_for
from maskgit_cli.decoding.blend import poisson_blend, smooth_prior
from maskgit_cli.decoding.decode import check_total_iter, decode_tokens
from maskgit_cli.decoding.guidance import code_patches_for, fallback_code_patches, known_pixel_bias
from maskgit_cli.decoding.settings import LAB_SETTINGS as LAB_SETTINGS  # re-exported: the settings' former home
from maskgit_cli.decoding.settings import InpaintSettings
from maskgit_cli.errors import MaskgitError
from maskgit_cli.runtime import autocast, vqgan_autocast
from maskgit_cli.vqgan.code_patches import CodePatches, read_code_patches, vqgan_code_patches
from maskgit_cli.vqgan.resolution import check_partners
from maskgit_cli.weights import default_weights, load_model, model_fingerprint, read_metadata, token_fingerprint


@dataclass
class InpaintBatch:
    images: torch.Tensor  # (B,3,H,W) in [0,1], final results
    still_masked: torch.Tensor  # (B,S)
    token_masks: torch.Tensor  # (B,h,w) bool, the tokens that were generated
    step_images: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # batch row -> S images (3,H,W)
    step_masks: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # batch row -> S+1 masks (h,w)
    confidence: torch.Tensor | None = None  # (B,h,w) each token's code's probability when fixed (1 = known)


def check_models(transformer, vqgan) -> None:
    t, v = transformer.config, vqgan.config
    if t.num_codebook_vectors != v.num_codebook_vectors:
        raise MaskgitError(
            f"the transformer predicts {t.num_codebook_vectors} codes but the VQGAN has "
            f"{v.num_codebook_vectors}: they were not trained together"
        )
    check_partners(t, v)


def with_defaults(transformer, vqgan):
    """``(transformer, vqgan)`` with None replaced by the shipped emoji64 weights files (both, or the missing one)."""
    transformer = default_weights("transformer") if transformer is None else transformer
    return transformer, default_weights("vqgan") if vqgan is None else vqgan


@dataclass
class Prepared:
    """Models ready to inpaint, and what a report needs to say about them."""

    transformer: torch.nn.Module
    vqgan: torch.nn.Module
    guide: CodePatches | None  # code patches for known-pixel guidance; None when it is off
    mean: tuple[float, ...]  # the VQGAN's normalization in use
    std: tuple[float, ...]
    vqgan_sha256: str


def prepare_models(
    transformer,
    vqgan,
    device,
    settings: InpaintSettings,
    code_patches: CodePatches | None = None,
    any_vqgan: bool = False,
) -> Prepared:
    """Models, or their weights files, ready to inpaint.

    Files are loaded strictly (the transformer's stored code patches with them, when guidance is on). The models
    must belong together: a transformer file that records the VQGAN it was trained with refuses another one unless
    ``any_vqgan``. They are moved to ``device`` in eval mode, the VQGAN's convolutions in channels-last layout (about
    1.5x faster on CPU, and the layout tensor cores prefer), and the VQGAN normalizes with ``settings.normalization``.
    Without stored code patches, guidance decodes them from the VQGAN once and caches them beside the transformer
    file (:func:`maskgit_cli.decoding.guidance.fallback_code_patches`).
    """
    transformer_path, recorded = None, None
    if isinstance(transformer, (str, Path)):
        transformer_path = Path(transformer)
        transformer = load_model(transformer_path, "transformer", device)  # first: its errors name the file's role
        recorded = read_metadata(transformer_path).get("vqgan_sha256") or None
        if code_patches is None and settings.pixel_guidance > 0:
            code_patches = read_code_patches(transformer_path)
    if isinstance(vqgan, (str, Path)):
        vqgan = load_model(vqgan, "vqgan", device)
    check_models(transformer, vqgan)
    check_total_iter(settings.decode.total_iter, transformer.config.num_image_tokens)
    transformer.to(device).eval()
    vqgan.to(device, memory_format=torch.channels_last).eval()
    own = model_fingerprint(vqgan)  # this VQGAN's weights: what reports name
    fingerprint = token_fingerprint(vqgan, own)  # its tokens' identity: what transformer files and code patches record
    recorded = recorded or (code_patches.vqgan_sha256 if code_patches is not None else None)
    if recorded and recorded != fingerprint and not any_vqgan:
        raise MaskgitError(
            f"the transformer was trained on the tokens of VQGAN {recorded[:12]}, but --vqgan is VQGAN "
            f"{fingerprint[:12]}: pass the VQGAN it was trained with (or --any-vqgan to use this one anyway)"
        )
    # after the VQGAN check: a wrong VQGAN with --lab is named as such, not as a VQGAN without test statistics
    mean, std = vqgan.use_normalization(settings.normalization)
    guide = None
    if settings.pixel_guidance > 0:
        # patches made with another VQGAN (allowed by any_vqgan) say nothing about this one's codes
        if code_patches is not None and code_patches.vqgan_sha256 in (None, fingerprint):
            guide = code_patches_for(vqgan, code_patches, fingerprint)
        else:
            # patches decoded from the VQGAN depend on its decoder too: cached under its own fingerprint
            guide = fallback_code_patches(vqgan, transformer, transformer_path, own, settings.normalization)
    return Prepared(transformer, vqgan, guide, mean, std, own)


@dataclass
class EncodedInputs:
    """A batch's VQGAN tokens and the tokens to generate: they do not depend on the decode settings."""

    tokens: torch.Tensor  # (B,L) ids of the gray-filled input
    token_masks: torch.Tensor  # (B,h,w) bool, the tokens to generate


def auto_dilate(dilate: int | None, vqgan_config) -> int:
    """The rings of tokens to regenerate around the holes: ``dilate`` when given, else the tokens the gray fill
    reaches (docs/decoding.md, "A tokenizer that keeps the context"): none beyond the holes' own tokens for a local
    encoder whose tokens see their own patch (``encoder_reach`` 0, the default weights), ``encoder_reach`` rings for
    a wider local one, and one ring for an image-wide encoder (the lab's), whose fill spreads everywhere but most
    near the holes (measured best, weights/README.md "--dilate")."""
    if dilate is not None:
        return dilate
    reach = getattr(vqgan_config, "encoder_reach", None)
    return 1 if reach is None else reach


@torch.no_grad()
def encode_inputs(vqgan, images: torch.Tensor, holes: torch.Tensor, settings: InpaintSettings) -> EncodedInputs:
    """Steps 1-2: fill the holes with gray, VQGAN-encode, and pick the tokens to generate (token rule, dilate)."""
    with vqgan_autocast(images.device, settings.precision):
        tokens = vqgan.encode_masked(images, holes).flatten(1)
    dilate = auto_dilate(settings.dilate, vqgan.config)
    return EncodedInputs(tokens, token_mask_for(holes, vqgan.config.latent_resolution, settings.token_mask, dilate))


@torch.no_grad()
def decode_inputs(
    transformer,
    vqgan,
    images: torch.Tensor,
    holes: torch.Tensor,
    encoded: EncodedInputs,
    settings: InpaintSettings,
    image_ids: torch.Tensor | None = None,
    record_rows=(),
    patches: torch.Tensor | None = None,
    on_step=None,
) -> InpaintBatch:
    """Steps 3-4 on :func:`encode_inputs`' result: decode the tokens under ``settings.decode``, then the pixels.

    With ``settings.draws`` K > 1 every image is decoded K times in one batch, each draw with its own random
    streams (:func:`draw_ids`), and the result is the mean of the K decoded images (and the smooth prior's
    confidence the mean of theirs); the steps (``on_step``, ``record_rows``) and the counts show draw 0.

    With ``settings.pixel_guidance`` > 0, ``patches`` (V,3,p,p) are the codes' mean looks for known-pixel
    guidance (:func:`maskgit_cli.guidance.code_patches_for`). ``on_step(t, images, token_masks)``: called after
    every step, as it happens, with the pixels of that step's predictions (R,3,H,W) and the tokens still masked
    (R,h,w) of the ``record_rows`` (all rows when none are given).
    """
    bias = None
    if settings.pixel_guidance > 0:
        if patches is None:
            raise ValueError("pixel guidance needs the code patches (see guidance.code_patches_for)")
        bias = known_pixel_bias(images, holes, patches, settings.pixel_guidance)
    latent = vqgan.config.latent_resolution
    amp = vqgan_autocast(images.device, settings.precision)
    tmask = encoded.token_masks
    n, draws = len(images), settings.draws
    tokens, unknown = encoded.tokens, tmask.flatten(1)
    if draws > 1:  # every draw of every image in one batch: rows d * n .. d * n + n - 1 are draw d
        image_ids = draw_ids(torch.arange(n) if image_ids is None else image_ids, draws)
        tokens, unknown = tokens.repeat(draws, 1), unknown.repeat(draws, 1)
        bias = None if bias is None else bias.repeat(draws, 1, 1)
    record = bool(record_rows)
    hook = None
    if on_step is not None:
        watched = list(record_rows) or list(range(len(images)))

        def hook(t: int, predicted: torch.Tensor, still: torch.Tensor) -> None:
            with amp:
                pixels = vqgan.decode(predicted[watched].view(-1, latent, latent)).float()
            pixels = finish(pixels, images[watched], holes[watched], settings)
            on_step(t, pixels, still[watched].view(-1, latent, latent))

    with autocast(images.device, settings.precision):
        mask_id = transformer.config.mask_token_id
        result = decode_tokens(transformer, tokens, unknown, settings.decode, mask_id, image_ids, record, bias, hook)
    with amp:  # a batch's worth at a time (one draw): the VQGAN's memory does not grow with the draws
        drawn = [vqgan.decode(t.view(-1, latent, latent)).float() for t in result.tokens.split(n)]
    out = torch.stack(drawn).mean(0)  # the draws' mean pixels and mean confidence (one draw: itself, exactly)
    confidence = result.confidence.view(draws, n, latent, latent).mean(0)
    out = finish(out, images, holes, settings, confidence)
    batch = InpaintBatch(out, result.still_masked[:n], tmask, confidence=confidence)
    for row in record_rows:
        preds = torch.stack([p[row] for p in result.step_predictions]).view(-1, latent, latent)
        with amp:  # at most a batch's worth at once: a batch of one decodes one step at a time, as the lab does
            step_imgs = torch.cat([vqgan.decode(chunk).float() for chunk in preds.split(len(images))])
        step_imgs = finish(step_imgs, images[row : row + 1].expand_as(step_imgs),
                           holes[row : row + 1].expand(len(step_imgs), -1, -1), settings)  # fmt: skip
        batch.step_images[row] = list(step_imgs)
        batch.step_masks[row] = [tmask[row]] + [m[row].view(latent, latent) for m in result.step_masks]
    return batch


DRAW_SHIFT = 56  # draw d's random streams: the image's key with d in bits 56-62 (settings.MAX_DRAWS = 64 draws)


def draw_ids(image_ids: torch.Tensor, draws: int) -> torch.Tensor:
    """The random stream keys of ``draws`` draws of the images ``image_ids`` (B,): (draws * B,), draw after draw;
    draw 0's are the images' own, so its tokens are those of a one-draw decode."""
    ids = image_ids.to(torch.int64)
    return torch.cat([ids ^ (d << DRAW_SHIFT) for d in range(draws)])


def finish(
    decoded: torch.Tensor,
    images: torch.Tensor,
    holes: torch.Tensor,
    settings: InpaintSettings,
    confidence: torch.Tensor | None = None,
) -> torch.Tensor:
    """The decoded pixels (B,3,H,W) as inpainting returns them: as decoded without ``settings.composite``; else the
    input ``images`` outside the ``holes`` (B,H,W) and, inside them, the decoded pixels Poisson-blended into the known
    ones (``blend`` poisson, :func:`~maskgit_cli.decoding.blend.poisson_blend`) or as decoded (none), then with
    ``fill`` smooth-prior and the tokens' ``confidence`` (B,h,w) pulled toward a smooth fill where the transformer
    was unsure (:func:`~maskgit_cli.decoding.blend.smooth_prior`). The per-step pictures come without
    ``confidence``: they show the draws themselves."""
    if not settings.composite:
        return decoded
    if settings.blend == "poisson":
        out = poisson_blend(decoded, images, holes)
    else:
        out = torch.where(holes[:, None].expand_as(images), decoded, images)
    if settings.fill == "smooth-prior" and confidence is not None:
        out = smooth_prior(out, images, holes, confidence)
    return out


@torch.no_grad()
def inpaint_batch(
    transformer, vqgan, images: torch.Tensor, holes: torch.Tensor, settings: InpaintSettings, *args, **kw
):
    """Inpaint a batch (:func:`encode_inputs`, then :func:`decode_inputs`): images (B,3,H,W) in [0,1] (holes may hold
    anything) and holes (B,H,W) bool. The other arguments are :func:`decode_inputs`' (``image_ids``,
    ``record_rows``, ``patches``, ``on_step``); returns an :class:`InpaintBatch`.

    ``patches``: the code patches for known-pixel guidance. Without them (and guidance on) they are decoded from
    the VQGAN on every call (1,024 decodes): pass them when calling this in a loop, as
    :class:`~maskgit_cli.decoding.pipeline.Inpainter` does.
    """
    call = inspect.signature(decode_inputs).bind(transformer, vqgan, images, holes, None, settings, *args, **kw)
    if call.arguments.get("patches") is None and settings.pixel_guidance > 0:
        call.arguments["patches"] = vqgan_code_patches(vqgan)
    call.arguments["encoded"] = encode_inputs(vqgan, images, holes, settings)
    return decode_inputs(*call.args, **call.kwargs)


def mask_tile(token_mask: torch.Tensor, size: int) -> np.ndarray:
    """Token mask (h,w) True = masked -> (size,size) uint8, white = known, black = still masked (the lab's): each
    token a (size/h) x (size/h) block, the VQGAN's patch at the model's size."""
    m = (~token_mask).to(torch.uint8).mul(255).cpu().numpy()
    k = size // m.shape[0]
    return m.repeat(k, 0).repeat(k, 1)
