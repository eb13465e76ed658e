"""One decoding step, as a pure function of tensors (in the style of diffusers' schedulers): no model inside.

:class:`ConfidenceSampler` is the official MaskGIT rule (docs/decoding.md, "The decoding rule"). Its ``step``
takes the transformer's logits for the current grid and returns the grid after step ``t``:

1. at every still-masked position, draw an id from softmax(logits / temperature) (temperature 1 is the official
   rule, our default 0.5; ``sampling="argmax"``: take the most likely, the lab's choice); the mask id is never
   drawn; known positions keep their ids;
2. the last step run (``t = S - 1``, S = the sweet spot) fills every position with its draw;
3. otherwise ``mask_len = floor(N * gamma((t+1)/T))`` clamped to [1, still masked - 1]
   (:func:`~maskgit_cli.schedules.mask_len_after_step`, N = the image's own count of unknown tokens at the
   start), confidence = log p(draw) + choice_temperature * (1 - r) * Gumbel(0, 1) (known positions: +inf), and the
   mask_len least confident positions are masked again.

The lab's starter code differs in two rules, each a setting (docs/lab.md, "The lab's inference"): ``ranking="p"``
ranks by p + noise instead of log p + noise, and ``counts="floor"`` keeps floor(N * gamma) masked with no clamp,
also after the last step run (whose draws still fill every position: only the mask shown after it differs).

Random numbers are counter-based (:func:`hashed_uniform`: a hash of seed, image id, step and position), so an image
gets the same result in any batch and on any device. The decoding loop (:mod:`maskgit_cli.decoding.decode`) calls
the model and this step.

:class:`HaltonSampler` (``--sampler halton``; docs/decoding.md, "The Halton sampler") has the same ``step``: it draws
the same way but reveals the unknown tokens in a fixed 2-D Halton order (:func:`halton_order`), as many per step as
:func:`halton_revealed` says, with no confidence ranking. :func:`make_sampler` picks the class from the settings.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from maskgit_cli.errors import MaskgitError
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
    # (B,L) float32: the probability each draw had (softmax at the temperature, guidance included), 1 where known:
    # the transformer's confidence in a token, kept at the step that fixes it (decode.DecodeResult.confidence)
    drawn_p: torch.Tensor | None = None


def _draw_masked(settings, mask_id: int, logits, t: int, ids, unknown, image_ids, logit_bias):
    """Draw a code at every still-masked position (stream 0 of step ``t``): (where, the grid with the draws in
    place, (B,L) float32 probability of each draw: 1 where known). The known tokens keep their ids; the mask id is
    never drawn; ``logit_bias`` is added first."""
    L = ids.shape[1]
    # Only the still-masked positions are drawn: softmax and sampling run on those rows alone.
    where = unknown.nonzero(as_tuple=True)
    rows = logits[where].float()  # (N,V+1)
    if logit_bias is not None:
        rows[:, : logit_bias.shape[-1]] += logit_bias[where]
    forbid_mask_token(rows, mask_id)
    scaled = rows / settings.temperature if settings.temperature != 1.0 else rows
    probs = scaled.softmax(-1)
    # NaN or +inf logits, logits / temperature beyond float32, or no finite logit make a row's softmax sum NaN, and
    # so every probability of the row (each is divided by the sum): its first column says so, at no cost
    broken = probs[:, 0].isnan()
    if broken.any():
        probs[broken] = _limit_probs(rows[broken], settings.temperature, t).to(probs.dtype)
    new = draw(probs, hashed_uniform(settings.seed, image_ids, t, 0, L)[where], settings.sampling)
    if (new == mask_id).any() or (new >= probs.shape[-1]).any():  # cannot happen: its probability is 0
        raise RuntimeError(f"the sampler drew the mask id {mask_id} at step {t}")
    sampled = ids.clone()
    sampled[where] = new  # known tokens keep their ids
    drawn_p = torch.ones(ids.shape, dtype=torch.float32, device=ids.device)
    drawn_p[where] = probs.gather(-1, new.unsqueeze(-1)).squeeze(-1).float()
    return where, sampled, drawn_p


def _limit_probs(rows: torch.Tensor, temperature: float, t: int) -> torch.Tensor:
    """(N,V+1) float64 probabilities for the rows whose float32 softmax(rows / temperature) is not finite.

    A temperature so low (or logits so large) that rows / temperature overflows: the same softmax computed as
    exp((rows - max) / temperature), in float64, whose limit is the argmax (ties share it). Logits of +inf: the
    codes that have one share the probability. The mask id's -inf stays 0. NaN logits, or no code with a logit
    above -inf, leave nothing to draw from: one line saying so (a transformer whose weights are broken)."""
    x = rows.double()
    if torch.isnan(x).any():
        raise MaskgitError(
            f"the transformer's logits are NaN at step {t + 1}: its weights or its input are broken (no code can be "
            "drawn)"
        )
    top = x.max(-1, keepdim=True).values
    if torch.isneginf(top).any():
        raise MaskgitError(f"every code's logit is -inf at step {t + 1}: no code can be drawn")
    plus_inf = torch.isposinf(x)
    if plus_inf.any():
        x = torch.where(plus_inf.any(-1, keepdim=True), torch.where(plus_inf, 0.0, -math.inf), x)
        top = x.max(-1, keepdim=True).values
    return ((x - top) / temperature).softmax(-1)


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
        counts, ranking = getattr(s, "counts", "clamped"), getattr(s, "ranking", "logp")
        last = t == s.steps - 1  # the last step run (sweet spot: the lab stops here) fills every position
        where, sampled, drawn_p = _draw_masked(s, self.mask_id, logits, t, ids, unknown, image_ids, logit_bias)
        if last and counts == "clamped":
            return StepOutput(sampled, torch.zeros_like(unknown), sampled, drawn_p)
        still = mask_len_after_step(s.schedule, t, s.total_iter, n_unknown, unknown.sum(1), counts)
        p = drawn_p[where]
        gumbel = -torch.log(-torch.log(hashed_uniform(s.seed, image_ids, t, 1, ids.shape[1])))
        confidence = _confidence(ranking, p, where, gumbel, s.choice_temperature * (1 - (t + 1) / s.total_iter))
        confidence = torch.where(unknown, confidence, torch.full_like(confidence, float("inf")))
        still_unknown = _lowest(confidence, still, unknown)
        if last:  # the lab's rule: every position filled, and the mask its picture shows after the step
            return _checked(StepOutput(sampled, still_unknown, sampled, drawn_p), ids, unknown)
        return _checked(
            StepOutput(mask_tokens(sampled, still_unknown, self.mask_id), still_unknown, sampled, drawn_p),
            ids,
            unknown,
        )


def _checked(out: StepOutput, ids: torch.Tensor, unknown: torch.Tensor) -> StepOutput:
    """``out``, after checking what holds by construction: the known tokens keep their ids and stay known."""
    known = ~unknown
    if (out.unknown & known).any() or not torch.equal(out.sampled[known], ids[known]):
        raise RuntimeError("the sampler changed a known token")  # cannot happen: a bug, not a user's error
    return out


def _confidence(ranking: str, p: torch.Tensor, where, gumbel: torch.Tensor, noise_scale: float) -> torch.Tensor:
    """(B,L) confidences of the draws at ``where`` (probabilities ``p``); other positions are overwritten later.

    ``logp``, the official rule: log p + scale * g in float64. ``p``, the lab's starter code: p + scale * g, in
    float32 as the lab computes it (p from the float32 softmax, g rounded to float32), so that its ranking is
    reproduced exactly (docs/lab.md, "The lab's inference")."""
    if ranking == "p":
        full = torch.ones(gumbel.shape, dtype=torch.float32, device=gumbel.device)
        full[where] = p.float()
        return full + noise_scale * gumbel.float()
    full = torch.ones(gumbel.shape, dtype=torch.float64, device=gumbel.device)
    full[where] = p.double()
    return torch.log(full) + noise_scale * gumbel


def _lowest(confidence: torch.Tensor, count: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """(B,L) bool: the ``count`` (B,) least confident ``unknown`` positions of each row (ties broken by position:
    stable sorts). Known positions are never chosen, whatever the confidences (+inf or NaN ones included): they
    rank after every unknown one."""
    B, L = confidence.shape
    order = torch.sort(confidence, dim=1, stable=True).indices
    order = order.gather(1, torch.sort((~unknown).gather(1, order).byte(), dim=1, stable=True).indices)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(L, device=confidence.device).expand(B, L))
    return (ranks < count[:, None]) & unknown


# ---------------------------------------------------------------------------------------------------------
# The Halton sampler (valeoai/Halton-MaskGIT; docs/decoding.md, "The Halton sampler")

HALTON_POINTS = 10_000  # the reference's number of points; more are taken only if these miss a position


def _radical_inverse(k: int, base: int) -> tuple[int, int]:
    """The radical inverse of ``k`` in ``base`` as an exact fraction (numerator, denominator)."""
    num, den = 0, 1
    while k:
        k, digit = divmod(k, base)
        num, den = num * base + digit, den * base
    return num, den


@functools.lru_cache(maxsize=8)
def _halton_order(h: int, w: int) -> tuple[int, ...]:
    order: dict[int, None] = {}
    k = 0
    while len(order) < h * w and k < max(HALTON_POINTS, 1000 * h * w):
        k += 1  # the points k = 1, 2, ... (the reference's generator starts at 1: 1/2, 1/3)
        (nx, dx), (ny, dy) = _radical_inverse(k, 2), _radical_inverse(k, 3)
        order.setdefault((nx * h // dx) * w + ny * w // dy)  # x indexes the row, y the column, floored exactly
    if len(order) < h * w:  # cannot happen (the sequence is dense); keep the order a permutation regardless
        order.update(dict.fromkeys(range(h * w)))
    return tuple(order)


def halton_order(h: int, w: int | None = None) -> torch.Tensor:
    """(h*w,) int64: every position of an h x w grid (row-major index) in the order of the 2-D Halton sequence.

    Point k = 1, 2, ...: x = radical inverse of k in base 2, y = in base 3; position (floor(x*h), floor(y*w));
    repeats dropped, keeping the first occurrence. The reference's 10,000 points cover every grid up to 32x32 (a
    16x16 grid needs 685); for larger grids we keep taking points until every position is listed.
    """
    return torch.tensor(_halton_order(h, h if w is None else w), dtype=torch.int64)


def halton_revealed(t: int, steps: int, n: int) -> int:
    """Tokens revealed after step ``t`` (0-based) of ``steps`` when ``n`` are unknown at the start: ratio = (t+1)/S,
    r = 1 - arccos(ratio)/(pi/2), max(t+1, int(r*n)) capped at n; the last step reveals all (float64 arithmetic)."""
    if t >= steps - 1:
        return n
    r = 1 - math.acos((t + 1) / steps) / (math.pi * 0.5)
    return min(n, max(t + 1, int(r * n)))


def halton_counts(steps: int, n: int) -> list[int]:
    """Still-masked tokens after each of the ``steps`` steps for ``n`` unknown tokens (last = 0)."""
    return [n - halton_revealed(t, steps, n) for t in range(steps)]


class HaltonSampler:
    """The Halton sampler's step, for inpainting: draw every masked token as :class:`ConfidenceSampler` does (softmax
    at ``temperature``, 1 in the reference; argmax with ``sampling="argmax"``; the same guidance and random
    streams), then keep the draws at the next positions of the image's own unknown tokens in Halton order
    (:func:`halton_order`), up to :func:`halton_revealed` of them, and mask the rest again. No confidence ranking;
    the schedule, T and ``choice_temperature`` play no part (the count uses S = ``steps`` alone). Known tokens are
    never rewritten. The grid must be square (L = side^2).
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
        """Step ``t`` (0-based); the arguments are :meth:`ConfidenceSampler.step`'s."""
        s = self.settings
        B, L = ids.shape
        side = math.isqrt(L)
        if side * side != L:
            raise ValueError(f"the Halton sampler needs a square token grid, got {L} tokens")
        _, sampled, drawn_p = _draw_masked(s, self.mask_id, logits, t, ids, unknown, image_ids, logit_bias)
        # Revealed so far: the first ones of the image's unknown tokens in Halton order. Earlier steps revealed a
        # prefix of that order, so this step reveals the first `new` of the still-masked ones.
        target = torch.tensor([halton_revealed(t, s.steps, n) for n in n_unknown.tolist()], device=ids.device)
        new = (target - (n_unknown - unknown.sum(1))).clamp_min(0)
        order = halton_order(side).to(ids.device)
        in_order = unknown[:, order]  # (B,L) still masked, in Halton order
        reveal_in_order = in_order & (in_order.cumsum(1) <= new[:, None])
        reveal = torch.zeros_like(unknown)
        reveal[:, order] = reveal_in_order
        still_unknown = unknown & ~reveal
        return _checked(
            StepOutput(mask_tokens(sampled, still_unknown, self.mask_id), still_unknown, sampled, drawn_p),
            ids,
            unknown,
        )


SAMPLER_CLASSES = {"confidence": ConfidenceSampler, "halton": HaltonSampler}


def make_sampler(settings, mask_id: int):
    """The sampler ``settings.sampler`` names (default confidence), for the transformer's ``mask_id``."""
    return SAMPLER_CLASSES[getattr(settings, "sampler", "confidence")](settings, mask_id)
