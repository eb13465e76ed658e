"""Iterative MaskGIT decoding of token grids: tensors in, tensors out. The loop calls the model and the step.

For step t = 0 .. S-1 (S = sweet_spot, default T; r = (t+1)/T): logits = transformer(current grid), then
:meth:`maskgit_cli.decoding.sampler.ConfidenceSampler.step` draws the masked tokens and masks the least confident
ones again (the official rule, docs/decoding.md, "The decoding rule"); the last step run fills everything. With
``sampler="halton"`` the step is :class:`~maskgit_cli.decoding.sampler.HaltonSampler`'s instead (tokens revealed in
a fixed Halton order; docs/decoding.md, "The Halton sampler"). Known tokens never change, and an image gets the
same result whatever batch it is decoded in. The settings: :class:`~maskgit_cli.decoding.settings.DecodeSettings`
(importable from here too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from maskgit_cli.decoding.sampler import make_sampler
from maskgit_cli.decoding.settings import DecodeSettings
from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.model import mask_tokens


@dataclass
class DecodeResult:
    tokens: torch.Tensor  # (B,L) final ids, no mask id anywhere
    still_masked: torch.Tensor  # (B,S) count of masked tokens after each step run (last column = 0)
    # With record=True: per step, the ids predicted everywhere (B,L) and the mask after the step (B,L).
    step_predictions: list[torch.Tensor] = field(default_factory=list)
    step_masks: list[torch.Tensor] = field(default_factory=list)
    # (B,L) float32: the probability each generated token's code had at the step that fixed it (1 for known
    # tokens): where the transformer was sure, and where its draw was a gamble (docs/decoding.md, "Smooth prior")
    confidence: torch.Tensor | None = None


def check_total_iter(total_iter: int, tokens: int) -> None:
    """More steps than tokens per image can only repeat work (and take hours): refuse T > L."""
    if total_iter > tokens:
        raise MaskgitError(
            f"--total-iter {total_iter}: at most {tokens} steps (the number of tokens per image); "
            "each step fills at least one token"
        )


@torch.no_grad()
def decode_tokens(
    model,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    settings: DecodeSettings,
    mask_id: int,
    image_ids: torch.Tensor | None = None,
    record: bool = False,
    logit_bias: torch.Tensor | None = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> DecodeResult:
    """Fill the ``unknown`` (B,L) positions of ``tokens`` (B,L) iteratively with ``model``, any callable from ids
    (B,L) to logits (B,L,V+1); ``mask_id`` is the id it reads as "masked" (as google-research's MaskGIT ``decode``
    takes it): a :class:`~maskgit_cli.transformer.model.MaskGITTransformer`'s is ``model.config.mask_token_id``.

    ``image_ids`` (B,) identify the images for the random streams (default 0..B-1); pass dataset indices to
    make results independent of batching. ``logit_bias`` (B,L,V): known-pixel guidance. ``on_step(t, predicted,
    still_masked)`` is called after every step with the ids predicted everywhere (B,L) and the mask left (B,L), as
    it happens (the page of `maskgit serve` shows them).
    """
    if tokens.shape != unknown.shape or tokens.dim() != 2:
        raise ValueError(f"tokens {tuple(tokens.shape)} and unknown {tuple(unknown.shape)} must both be (B,L)")
    check_total_iter(settings.total_iter, tokens.shape[1])
    B = tokens.shape[0]
    image_ids = torch.arange(B) if image_ids is None else image_ids
    image_ids = image_ids.to(device=tokens.device, dtype=torch.int64)
    unknown = unknown.bool()
    n_unknown = unknown.sum(1)
    ids = mask_tokens(tokens, unknown, mask_id)
    sampler = make_sampler(settings, mask_id)
    counts, predictions, masks = [], [], []
    confidence = torch.ones(tokens.shape, dtype=torch.float32, device=tokens.device)
    for t in range(settings.steps):
        out = sampler.step(model(ids), t, ids, unknown, n_unknown, image_ids, logit_bias)
        fixed = unknown if t == settings.steps - 1 else unknown & ~out.unknown  # the last step fills everything
        confidence = torch.where(fixed, out.drawn_p, confidence)
        ids, unknown = out.ids, out.unknown
        counts.append(unknown.sum(1))
        if on_step is not None:
            on_step(t, out.sampled, unknown)
        if record:
            predictions.append(out.sampled)
            masks.append(unknown)
    return DecodeResult(ids, torch.stack(counts, 1), predictions, masks, confidence)
