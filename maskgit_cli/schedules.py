"""Mask schedules: how many tokens stay masked, at decode time and at training time.

Small pure functions (diffusers style). Everything here works on Python numbers and on torch tensors
(per-sample counts as a batch tensor). Tensors are computed in float64; decode counts
(``mask_len_after_step``) are bit-identical between the scalar and the batch path.

Definitions (docs/decoding.md, "Mask schedules"; the official google-research/maskgit ``mask_schedule.py``):

* ``gamma(name, r, N)`` is the fraction of the *initially unknown* tokens that is still masked at ratio
  ``r`` in (0, 1] (``r = 0`` is accepted too, for training). It is clipped to ``[1e-6, 1]``.
* Decoding (``mask_len_after_step``): after step ``t`` of ``T`` (r = (t+1)/T),
  ``mask_len = floor(N * gamma(r))`` clamped to ``[1, n_still_masked - 1]``; the last step fills everything.
  These are *cumulative* counts relative to N (not per-step deltas), per sample (not batch-wide).
* Training (``training_mask_count``): the paper's rule, r ~ U[0, 1), ``ceil(gamma(r) * N)`` tokens masked
  (at least 1), or the lab seed's ``uniform:a,b`` (masked fraction uniform in [a, b]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from maskgit_cli.choices import COUNT_RULES, SCHEDULE_ALIASES, SCHEDULE_NAMES, SCHEDULES, check_choice
from maskgit_cli.errors import MaskgitError

Number = int | float
TensorOrNumber = torch.Tensor | int | float

GAMMA_MIN = 1e-6  # gamma is clipped to [1e-6, 1] (docs/decoding.md, "Mask schedules")
GAMMA_MAX = 1.0


class _FloatOps:
    """The operations the formulas use, on Python floats (math: the same libm results as the official numpy)."""

    cos, sqrt, acos = math.cos, math.sqrt, math.acos

    @staticmethod
    def log2(x: float) -> float:
        return math.inf * -1 if x <= 0 else math.log2(x)

    @staticmethod
    def clamp(x: float, lo: float, hi: float) -> float:
        return min(max(x, lo), hi)


class _TensorOps:
    """The same operations on float64 tensors."""

    cos, sqrt, acos, log2 = torch.cos, torch.sqrt, torch.arccos, torch.log2

    @staticmethod
    def clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp(lo, hi)


# Each formula once: gamma(r) given r, log2(N) and the operations (floats or tensors). N = the per-sample number of
# tokens unknown at the start; only logarithm and exp use it.
FORMULAS = {
    "cosine": lambda r, log2n, op: op.cos(math.pi / 2 * r),
    "linear": lambda r, log2n, op: 1.0 - r,
    "square": lambda r, log2n, op: 1.0 - r**2,
    "cubic": lambda r, log2n, op: 1.0 - r**3,
    "sqrt": lambda r, log2n, op: 1.0 - op.sqrt(op.clamp(r, 0.0, math.inf)),
    "logarithm": lambda r, log2n, op: -op.log2(r) / log2n,  # log2(0) = -inf -> +inf -> clipped to 1
    "exp": lambda r, log2n, op: 1.0 - 2.0 ** (-log2n * (1.0 - r)),
    "arccos": lambda r, log2n, op: op.acos(op.clamp(r, -1.0, 1.0)) / (math.pi / 2),
}
NEEDS_N = frozenset({"logarithm", "exp"})  # schedules whose formula needs N
assert tuple(FORMULAS) == SCHEDULES


def canonical_schedule(name: str) -> str:
    """Map a schedule name or alias (case-insensitive) to its canonical name; MaskgitError if unknown."""
    key = str(name).strip().lower()
    key = SCHEDULE_ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise MaskgitError(f"unknown mask schedule {name!r}; valid names: {', '.join(SCHEDULE_NAMES)}.")
    return key


def _log2_n(n: TensorOrNumber) -> TensorOrNumber:
    # log2(N) is 0 for N = 1 (and undefined below). With a single unknown token every rule below masks or
    # fills it regardless of gamma, so N < 2 is treated as N = 2 to keep the formulas finite.
    if isinstance(n, torch.Tensor):
        return torch.log2(n.clamp_min(2.0))
    return math.log2(max(float(n), 2.0))


def gamma(name: str, r: TensorOrNumber, n_unknown: TensorOrNumber | None = None) -> TensorOrNumber:
    """Fraction of the initially unknown tokens still masked at ratio ``r`` (see :data:`FORMULAS`), in [1e-6, 1].

    ``r`` and ``n_unknown`` may be Python numbers or tensors (broadcast together, e.g. a scalar r and a (B,)
    tensor of per-sample N). With any tensor input the result is a float64 tensor on that tensor's device;
    otherwise a Python float. ``n_unknown`` is required for ``logarithm`` and ``exp``.
    """
    name = canonical_schedule(name)
    if name in NEEDS_N and n_unknown is None:
        raise ValueError(f"schedule {name!r} needs n_unknown (N, the number of tokens unknown at the start)")
    if not (isinstance(r, torch.Tensor) or isinstance(n_unknown, torch.Tensor)):
        log2n = None if n_unknown is None else _log2_n(n_unknown)
        return _FloatOps.clamp(FORMULAS[name](float(r), log2n, _FloatOps), GAMMA_MIN, GAMMA_MAX)
    device = r.device if isinstance(r, torch.Tensor) else n_unknown.device  # type: ignore[union-attr]
    rt = torch.as_tensor(r, dtype=torch.float64, device=device)
    nt = None if n_unknown is None else torch.as_tensor(n_unknown, dtype=torch.float64, device=device)
    g = FORMULAS[name](rt, None if nt is None else _log2_n(nt), _TensorOps)
    g = torch.as_tensor(g, dtype=torch.float64, device=device)
    if nt is not None:  # broadcast to the batch shape even for formulas that ignore N
        g = g + torch.zeros_like(nt)
    return g.clamp(GAMMA_MIN, GAMMA_MAX)


# ---------------------------------------------------------------------------------------------------------
# Decoding


def mask_len_after_step(
    name: str, t: int, T: int, n_unknown: TensorOrNumber, n_still_masked: TensorOrNumber, counts: str = "clamped"
) -> TensorOrNumber:
    """Number of tokens that stay masked after decode step ``t`` (0-based) of ``T``.

    The official rule (docs/decoding.md, "The decoding rule"; ``parallel_decode.py``), per sample:
    ``mask_len = floor(N * gamma((t+1)/T))`` clamped to ``[1, n_still_masked - 1]``, where N = ``n_unknown``
    is the count of tokens unknown before step 0 and ``n_still_masked`` the count unknown before step t.
    So every step fills at least one token and keeps at least one masked for the next step. Edge cases:

    * last step (``t == T - 1``): 0, everything is filled (the official decoder returns the sampled ids of
      the last step everywhere, which is the same thing);
    * ``n_still_masked == 1``: 1, as in the official clamp ``max(1, min(0, ...))``: a single unknown token
      stays masked (and is re-sampled) until the last step. ``n_still_masked == 0`` (nothing to generate,
      e.g. an image without holes) stays 0, where the official code would re-mask a known token.

    ``counts="floor"`` is the lab's rule instead (docs/lab.md, "The lab's inference"): ``floor(N * gamma((t+1)/T))``
    with no clamp and no special last step, so a step may fix no token when T is large (0 once nothing is masked).

    ``n_unknown`` / ``n_still_masked`` may be ints or integer tensors (e.g. shape (B,)); with tensors the
    result is a long tensor of the broadcast shape, otherwise an int.
    """
    if T < 1 or not 0 <= t < T:
        raise ValueError(f"need 0 <= t < T and T >= 1, got t={t}, T={T}")
    check_choice(counts, COUNT_RULES, "--counts")
    r = (t + 1) / T
    if isinstance(n_unknown, torch.Tensor) or isinstance(n_still_masked, torch.Tensor):
        ref = n_unknown if isinstance(n_unknown, torch.Tensor) else n_still_masked
        still = torch.as_tensor(n_still_masked, device=ref.device).long()
        n = torch.as_tensor(n_unknown, device=ref.device).long()
        still, n = torch.broadcast_tensors(still, n)
        if t == T - 1 and counts == "clamped":
            return torch.zeros_like(still)
        # gamma via the Python-float path (per distinct N for log/exp), so that batch and scalar counts
        # agree bit for bit (torch and math transcendental functions can differ in the last ulp).
        if canonical_schedule(name) in NEEDS_N:
            uniq, inverse = torch.unique(n, return_inverse=True)
            g = torch.tensor([gamma(name, r, u) for u in uniq.tolist()], dtype=torch.float64, device=n.device)
            g = g[inverse]
        else:
            g = gamma(name, r)
        raw = torch.floor(n.double() * g).long()
        if counts == "floor":
            return torch.where(still <= 0, torch.zeros_like(raw), raw)
        out = torch.minimum(raw, still - 1).clamp_min(1)
        return torch.where(still <= 0, torch.zeros_like(out), out)
    still_i, n_i = int(n_still_masked), int(n_unknown)
    if still_i <= 0 or (t == T - 1 and counts == "clamped"):
        return 0
    raw_i = math.floor(n_i * gamma(name, r, n_i))
    return raw_i if counts == "floor" else max(1, min(still_i - 1, raw_i))


def expected_counts(name: str, T: int, N: int, counts: str = "clamped", steps: int | None = None) -> list[int]:
    """Still-masked counts after each decode step 1..S (S = ``steps``, default T) for a sample with N unknown
    tokens at the start.

    Ground truth for decoder tests. With the official ``counts="clamped"``: non-increasing, strictly decreasing
    while more than one token is masked, and always ending at 0 (the last step run fills everything). With the
    lab's ``"floor"``: ``floor(N * gamma((t+1)/T))`` after every step, the last one included.
    """
    steps = T if steps is None else steps
    out, still = [], int(N)
    for t in range(steps):
        still = 0 if t == steps - 1 and counts == "clamped" else mask_len_after_step(name, t, T, N, still, counts)
        out.append(still)
    return out


# ---------------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class MaskRatio:
    """A parsed ``--mask-ratio``: a schedule (paper rule) or a uniform range of masked fractions."""

    kind: str  # "schedule" or "uniform"
    schedule: str | None = None  # canonical schedule name when kind == "schedule"
    low: float = 0.0  # masked fraction range when kind == "uniform"
    high: float = 1.0

    def __str__(self) -> str:
        return self.schedule if self.kind == "schedule" else f"uniform:{self.low:g},{self.high:g}"


def parse_mask_ratio(spec: str | MaskRatio) -> MaskRatio:
    """Parse ``--mask-ratio``: a schedule name (e.g. ``cosine``; paper rule) or ``uniform:a,b`` with
    0 <= a <= b <= 1 (masked fraction uniform in [a, b], the lab seed's choice). MaskgitError on bad input."""
    if isinstance(spec, MaskRatio):
        return spec
    text = str(spec).strip().lower()
    if ":" in text:
        kind, _, rest = text.partition(":")
        if kind.strip() != "uniform":
            raise MaskgitError(
                f"--mask-ratio {spec!r}: expected a schedule name or 'uniform:a,b' (e.g. uniform:0.1,0.9)."
            )
        parts = rest.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise MaskgitError(
                f"--mask-ratio {spec!r}: 'uniform:a,b' needs two numbers, e.g. uniform:0.1,0.9."
            ) from None
        if not (0.0 <= low <= high <= 1.0):
            raise MaskgitError(f"--mask-ratio {spec!r}: need 0 <= a <= b <= 1 in 'uniform:a,b'.")
        return MaskRatio(kind="uniform", low=low, high=high)
    try:
        name = canonical_schedule(text)
    except MaskgitError:
        valid = ", ".join(SCHEDULE_NAMES)
        msg = f"--mask-ratio {spec!r}: expected 'uniform:a,b' or a schedule name ({valid})."
        raise MaskgitError(msg) from None
    return MaskRatio(kind="schedule", schedule=name)


def training_mask_count(
    spec: str | MaskRatio,
    n_tokens: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per-sample number of tokens to mask for one training batch: a (batch_size,) long tensor in [1, N].

    * schedule name (paper; docs/decoding.md, "Training objective"): r ~ U[0, 1), count = ceil(gamma(r, N) * N);
    * ``uniform:a,b``: fraction f ~ U[a, b], count = ceil(f * N).
    Counts are clamped to [1, N] (N = ``n_tokens``). Draws exactly ``batch_size`` uniforms from
    ``generator`` (which must live on ``device``), so a seeded generator reproduces the batch.
    """
    ratio = parse_mask_ratio(spec)
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
    if ratio.kind == "schedule":
        frac = gamma(ratio.schedule, u, torch.full_like(u, float(n_tokens)))
    else:
        frac = ratio.low + (ratio.high - ratio.low) * u
    # The small epsilon keeps exact products (e.g. 0.5 * 256 = 128.00000000000003) from rounding up.
    count = torch.ceil(frac * n_tokens - 1e-9).long()
    return count.clamp(1, n_tokens)


def training_mask(
    spec: str | MaskRatio,
    batch_size: int,
    n_tokens: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean (batch_size, n_tokens) mask, True = masked, with exactly ``training_mask_count`` random
    positions per row (uniform without replacement: rank of a random key < count)."""
    count = training_mask_count(spec, n_tokens, batch_size, generator=generator, device=device)
    keys = torch.rand(batch_size, n_tokens, generator=generator, device=device)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return ranks < count[:, None]
