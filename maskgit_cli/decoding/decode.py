"""Iterative MaskGIT decoding of token grids: tensors in, tensors out.

The rule implemented is the official one (google-research/maskgit ``parallel_decode.py``, REFERENCE §2),
per sample, with the lab's ``sweet_spot`` on top (REFERENCE §1.3):

for step t = 0 .. S-1 (S = sweet_spot, default T; r = (t+1)/T):
  1. logits = transformer(ids with MASK at unknown positions); the mask id is never sampled.
  2. sample an id at every position (``sampling="sample"``: from softmax(logits); ``"argmax"``: the lab's
     choice); known positions keep their id. p = probability of the chosen id.
  3. if t is the last step run (t = S-1): every position takes its sampled id. Done.
  4. mask_len = floor(N * gamma(r)) clamped to [1, still_masked - 1] (``schedules.mask_len_after_step``;
     N = the sample's own count of unknown tokens at the start: counts are cumulative, not per step).
  5. confidence = log(p) + choice_temperature * (1 - r) * Gumbel(0,1); known positions get +inf.
  6. the mask_len lowest-confidence positions are masked again; all other positions keep their ids.

Known tokens never change. Randomness is counter-based (a hash of seed, image id, step, position), so an
image gets the same result whatever batch it is decoded in and whatever device runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from maskgit_cli.choices import SAMPLING
from maskgit_cli.decoding.schedules import canonical_schedule, mask_len_after_step
from maskgit_cli.errors import MaskgitError


@dataclass
class DecodeSettings:
    schedule: str = "cosine"
    total_iter: int = 8  # T in r = (t+1)/T
    sweet_spot: int | None = None  # steps actually run (the lab's meaning); None = total_iter
    choice_temperature: float = 4.5  # REFERENCE §1.2 / §2
    sampling: str = "sample"
    seed: int = 0

    def __post_init__(self) -> None:
        self.schedule = canonical_schedule(self.schedule)
        if self.total_iter < 1:
            raise MaskgitError(f"--total-iter {self.total_iter}: must be at least 1")
        if self.sweet_spot is not None and not 1 <= self.sweet_spot <= self.total_iter:
            raise MaskgitError(
                f"--sweet-spot {self.sweet_spot}: must be between 1 and --total-iter ({self.total_iter})"
            )
        if self.sampling not in SAMPLING:
            raise MaskgitError(f"--sampling {self.sampling}: expected one of {', '.join(SAMPLING)}")
        if self.choice_temperature < 0:
            raise MaskgitError(f"--choice-temperature {self.choice_temperature}: must be >= 0")

    @property
    def steps(self) -> int:
        return self.total_iter if self.sweet_spot is None else self.sweet_spot


@dataclass
class DecodeResult:
    tokens: torch.Tensor  # (B,L) final ids, no mask id anywhere
    still_masked: torch.Tensor  # (B,S) count of masked tokens after each step run (last column = 0)
    # With record=True: per step, the ids predicted everywhere (B,L) and the mask after the step (B,L).
    step_predictions: list[torch.Tensor] = field(default_factory=list)
    step_masks: list[torch.Tensor] = field(default_factory=list)


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


# ---------------------------------------------------------------------------------------------------------


def _sample(probs: torch.Tensor, u: torch.Tensor, sampling: str) -> torch.Tensor:
    """Ids (...) from probs (...,V): inverse-CDF with uniforms u (...), or argmax."""
    if sampling == "argmax":
        return probs.argmax(-1)
    cdf = probs.double().cumsum(-1)
    cdf = cdf / cdf[..., -1:]  # exact 1 at the end
    ids = torch.searchsorted(cdf, u.unsqueeze(-1)).squeeze(-1)
    return ids.clamp_max(probs.shape[-1] - 1)


@torch.no_grad()
def decode_tokens(
    model,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    settings: DecodeSettings,
    image_ids: torch.Tensor | None = None,
    record: bool = False,
    logit_bias: torch.Tensor | None = None,
) -> DecodeResult:
    """Fill the ``unknown`` (B,L) positions of ``tokens`` (B,L) iteratively with ``model`` (ids -> logits).

    ``image_ids`` (B,) identify the images for the random streams (default 0..B-1); pass dataset indices to
    make results independent of batching.
    """
    if tokens.shape != unknown.shape or tokens.dim() != 2:
        raise ValueError(f"tokens {tuple(tokens.shape)} and unknown {tuple(unknown.shape)} must both be (B,L)")
    mask_id = model.config.mask_token_id
    device = tokens.device
    B, L = tokens.shape
    if image_ids is None:
        image_ids = torch.arange(B, device=device)
    image_ids = image_ids.to(device=device, dtype=torch.int64)
    unknown = unknown.bool().clone()
    n_unknown = unknown.sum(1)
    ids = torch.where(unknown, torch.full_like(tokens, mask_id), tokens)
    T, S = settings.total_iter, settings.steps
    counts, predictions, masks = [], [], []
    for t in range(S):
        r = (t + 1) / T
        # Only the still-masked positions are sampled: softmax and sampling run on those rows alone.
        where = unknown.nonzero(as_tuple=True)
        logits = model(ids)[where].float()  # (N,V+1)
        if logit_bias is not None:
            logits[:, : logit_bias.shape[-1]] += logit_bias[where]
        logits[:, mask_id] = float("-inf")  # never sample the mask token
        probs = logits.softmax(-1)
        new = _sample(probs, hashed_uniform(settings.seed, image_ids, t, 0, L)[where], settings.sampling)
        sampled = ids.clone()
        sampled[where] = new  # known tokens keep their ids
        if t == S - 1:  # the last step run fills everything (sweet spot: the lab stops here)
            ids, unknown = sampled, torch.zeros_like(unknown)
        else:
            still = mask_len_after_step(settings.schedule, t, T, n_unknown, unknown.sum(1))
            p = torch.ones(B, L, dtype=torch.float64, device=device)
            p[where] = probs.gather(-1, new.unsqueeze(-1)).squeeze(-1).double()
            u = hashed_uniform(settings.seed, image_ids, t, 1, L)
            gumbel = -torch.log(-torch.log(u))
            confidence = torch.log(p) + settings.choice_temperature * (1 - r) * gumbel
            confidence = torch.where(unknown, confidence, torch.full_like(confidence, float("inf")))
            # Rank positions by confidence (ties broken by position: stable sort); re-mask the lowest `still`.
            order = torch.sort(confidence, dim=1, stable=True).indices
            ranks = torch.empty_like(order)
            ranks.scatter_(1, order, torch.arange(L, device=device).expand(B, L))
            unknown = ranks < still[:, None]
            ids = torch.where(unknown, torch.full_like(sampled, mask_id), sampled)
        counts.append(unknown.sum(1))
        if record:
            predictions.append(sampled.clone())
            masks.append(unknown.clone())
    return DecodeResult(ids, torch.stack(counts, 1), predictions, masks)
