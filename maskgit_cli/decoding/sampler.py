"""One decoding step, as a pure function of tensors (in the style of diffusers' schedulers): no model inside.

:class:`ConfidenceSampler` is the official MaskGIT rule (docs/decoding.md, "The decoding rule"). Its ``step``
takes the transformer's logits for the current grid and returns the grid after step ``t``:

1. at every still-masked position, draw an id from softmax(logits) (``sampling="argmax"``: take the most likely,
   the lab's choice); the mask id is never drawn; known positions keep their ids;
2. the last step run (``t = S - 1``, S = the sweet spot) fills every position with its draw;
3. otherwise ``mask_len = floor(N * gamma((t+1)/T))`` clamped to [1, still masked - 1]
   (:func:`~maskgit_cli.schedules.mask_len_after_step`, N = the image's own count of unknown tokens at the
   start), confidence = log p(draw) + choice_temperature * (1 - r) * Gumbel(0, 1) (known positions: +inf), and the
   mask_len least confident positions are masked again.

Random numbers are counter-based (:func:`hashed_uniform`: a hash of seed, image id, step and position), so an image
gets the same result in any batch and on any device. The decoding loop (:mod:`maskgit_cli.decoding.decode`) calls
the model and this step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskgit_cli.schedules import mask_len_after_step
from maskgit_cli.transformer.model import forbid_mask_token, mask_tokens

# ---------------------------------------------------------------------------------------------------------
# Counter-based random numbers (splitmix64 finalizer over int64 tensors; wrap-around arithmetic).

_M64 = (1 << 64) - 1


def _i64(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN, _MIX1, _MIX2 = _i64(0x9E3779B97F4A7C15), _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def hashed_uniform(seed: int, image_ids: torch.Tensor, step: int, stream: int, n: int) -> torch.Tensor:
    """(B,n) float64 uniforms in (0,1), a pure function of (seed, image id, step, stream, position)."""
    base = _mix(torch.full_like(image_ids, _i64(seed & _M64)))
    key = _mix(base ^ image_ids)
    key = _mix(key ^ (step * 16 + stream))
    pos = torch.arange(n, device=image_ids.device, dtype=torch.int64)
    bits = _shr(_mix(key[:, None] ^ pos[None, :]), 11)  # 53 random bits
    return (bits.double() + 0.5) / float(1 << 53)


def draw(probs: torch.Tensor, u: torch.Tensor, sampling: str) -> torch.Tensor:
    """Ids (...) from probs (...,V): inverse-CDF with uniforms u (...), or argmax."""
    if sampling == "argmax":
        return probs.argmax(-1)
    cdf = probs.double().cumsum(-1)
    cdf = cdf / cdf[..., -1:]  # exact 1 at the end
    ids = torch.searchsorted(cdf, u.unsqueeze(-1)).squeeze(-1)
    return ids.clamp_max(probs.shape[-1] - 1)


# ---------------------------------------------------------------------------------------------------------


@dataclass
class StepOutput:
    ids: torch.Tensor  # (B,L) the grid after the step: the mask id where still masked
    unknown: torch.Tensor  # (B,L) bool, still masked after the step
    sampled: torch.Tensor  # (B,L) this step's draws at the positions that were masked, the known ids elsewhere


class ConfidenceSampler:
    """The official MaskGIT step: draw every masked token, keep the most confident, mask the rest again.

    ``schedule``, ``total_iter`` (T), ``steps`` (S <= T, the steps actually run), ``choice_temperature``,
    ``sampling`` and ``seed`` come from :class:`~maskgit_cli.decoding.decode.DecodeSettings` (any object with
    those attributes); ``mask_id`` is the transformer's mask token id.
    """

    def __init__(self, settings, mask_id: int):
        self.settings, self.mask_id = settings, mask_id

    def step(
        self,
        logits: torch.Tensor,
        t: int,
        ids: torch.Tensor,
        unknown: torch.Tensor,
        n_unknown: torch.Tensor,
        image_ids: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
    ) -> StepOutput:
        """Step ``t`` (0-based) on the grid ``ids`` (B,L) whose ``unknown`` (B,L) positions are masked.

        ``logits`` (B,L,V+1) are the transformer's output for ``ids``; ``n_unknown`` (B,) the count of unknown
        tokens before step 0; ``image_ids`` (B,) name the images for the random streams; ``logit_bias`` (B,L,V)
        is added to the codebook logits (known-pixel guidance).
        """
        s = self.settings
        B, L = ids.shape
        r = (t + 1) / s.total_iter
        # Only the still-masked positions are drawn: softmax and sampling run on those rows alone.
        where = unknown.nonzero(as_tuple=True)
        rows = logits[where].float()  # (N,V+1)
        if logit_bias is not None:
            rows[:, : logit_bias.shape[-1]] += logit_bias[where]
        probs = forbid_mask_token(rows, self.mask_id).softmax(-1)
        new = draw(probs, hashed_uniform(s.seed, image_ids, t, 0, L)[where], s.sampling)
        sampled = ids.clone()
        sampled[where] = new  # known tokens keep their ids
        if t == s.steps - 1:  # the last step run fills everything (sweet spot: the lab stops here)
            return StepOutput(sampled, torch.zeros_like(unknown), sampled)
        still = mask_len_after_step(s.schedule, t, s.total_iter, n_unknown, unknown.sum(1))
        p = torch.ones(B, L, dtype=torch.float64, device=ids.device)
        p[where] = probs.gather(-1, new.unsqueeze(-1)).squeeze(-1).double()
        gumbel = -torch.log(-torch.log(hashed_uniform(s.seed, image_ids, t, 1, L)))
        confidence = torch.log(p) + s.choice_temperature * (1 - r) * gumbel
        confidence = torch.where(unknown, confidence, torch.full_like(confidence, float("inf")))
        # Rank positions by confidence (ties broken by position: stable sort); mask the lowest `still` again.
        order = torch.sort(confidence, dim=1, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(L, device=ids.device).expand(B, L))
        still_unknown = ranks < still[:, None]
        return StepOutput(mask_tokens(sampled, still_unknown, self.mask_id), still_unknown, sampled)
