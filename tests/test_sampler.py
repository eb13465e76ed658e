"""The decoding step without a model: random logits in, the official rule's grid out."""

import pytest
import torch

from maskgit_cli.choices import SCHEDULES
from maskgit_cli.decoding.decode import DecodeSettings
from maskgit_cli.decoding.sampler import ConfidenceSampler, draw, hashed_uniform
from maskgit_cli.schedules import expected_counts

L, V, MASK = 64, 10, 10  # a 8x8 grid, 10 codes, mask id 10


def grid(sizes=(64, 40, 7, 1, 0), seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (len(sizes), L), generator=g)
    unknown = torch.zeros(len(sizes), L, dtype=torch.bool)
    for i, n in enumerate(sizes):
        unknown[i, torch.randperm(L, generator=g)[:n]] = True
    return tokens, unknown


def run_steps(settings, tokens, unknown, seed=0):
    """Drive the step with fresh random logits each step (no model): returns the still-masked counts and grids."""
    g = torch.Generator().manual_seed(seed)
    sampler = ConfidenceSampler(settings, MASK)
    ids = torch.where(unknown, torch.full_like(tokens, MASK), tokens)
    n_unknown, image_ids = unknown.sum(1), torch.arange(len(tokens))
    counts, outs = [], []
    for t in range(settings.steps):
        logits = torch.randn(len(tokens), L, V + 1, generator=g)
        out = sampler.step(logits, t, ids, unknown, n_unknown, image_ids)
        ids, unknown = out.ids, out.unknown
        counts.append(unknown.sum(1).tolist())
        outs.append(out)
    return counts, outs


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("T", [1, 3, 8])
def test_step_counts_follow_the_schedule(schedule, T):
    tokens, unknown = grid()
    counts, _ = run_steps(DecodeSettings(schedule=schedule, total_iter=T), tokens, unknown)
    for i, n in enumerate(unknown.sum(1).tolist()):
        assert [c[i] for c in counts] == expected_counts(schedule, T, n)


def test_step_never_touches_known_tokens_and_never_draws_the_mask_id():
    tokens, unknown = grid()
    _, outs = run_steps(DecodeSettings(total_iter=6, sampling="sample"), tokens, unknown)
    for out in outs:
        assert torch.equal(out.sampled[~unknown], tokens[~unknown])
        assert (out.sampled != MASK).all()
        assert torch.equal(out.ids == MASK, out.unknown)  # masked exactly where still unknown
    assert not outs[-1].unknown.any() and torch.equal(outs[-1].ids[~unknown], tokens[~unknown])


def test_step_keeps_the_most_confident_draws_without_noise():
    """choice_temperature 0: the tokens that stay masked are exactly the least probable draws."""
    tokens, unknown = grid(sizes=(64,))
    settings = DecodeSettings(total_iter=4, sampling="argmax", choice_temperature=0.0)
    logits = torch.randn(1, L, V + 1, generator=torch.Generator().manual_seed(3))
    ids = torch.full_like(tokens, MASK)
    out = ConfidenceSampler(settings, MASK).step(logits, 0, ids, unknown, unknown.sum(1), torch.arange(1))
    p = logits[..., :V].softmax(-1).max(-1).values  # argmax probability (the mask column is excluded)
    kept, masked = p[~out.unknown], p[out.unknown]
    assert out.unknown.sum() == expected_counts("cosine", 4, 64)[0]
    assert kept.min() >= masked.max()


def test_sweet_spot_fills_everything_at_the_last_step_run():
    tokens, unknown = grid()
    counts, _ = run_steps(DecodeSettings(total_iter=8, sweet_spot=3), tokens, unknown)
    assert len(counts) == 3 and counts[-1] == [0] * len(tokens)
    assert counts[:2] == [[expected_counts("cosine", 8, n)[t] for n in unknown.sum(1).tolist()] for t in range(2)]


def test_logit_bias_steers_the_draw():
    tokens, unknown = grid(sizes=(64,))
    logits = torch.zeros(1, L, V + 1)
    bias = torch.full((1, L, V), -1e4)
    bias[..., 7] = 0.0  # only code 7 is allowed
    settings = DecodeSettings(total_iter=1)
    out = ConfidenceSampler(settings, MASK).step(
        logits, 0, torch.full_like(tokens, MASK), unknown, unknown.sum(1), torch.arange(1), logit_bias=bias
    )
    assert (out.ids == 7).all()


def test_sampling_follows_the_distribution():
    """Inverse-CDF sampling with the hashed uniforms reproduces a known categorical distribution."""
    probs = torch.tensor([0.1, 0.6, 0.3]).expand(1, 20000, 3)
    u = hashed_uniform(0, torch.tensor([0]), 0, 0, 20000)
    ids = draw(probs, u, "sample")[0]
    freq = torch.bincount(ids, minlength=3).double() / 20000
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64), atol=0.015)


def test_hashed_uniforms_are_uniform_and_keyed():
    u = hashed_uniform(3, torch.tensor([0, 1]), 0, 0, 50000)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    assert not torch.equal(u[0], u[1])
    assert torch.equal(u[1], hashed_uniform(3, torch.tensor([1]), 0, 0, 50000)[0])
    assert not torch.equal(u[0], hashed_uniform(3, torch.tensor([0]), 1, 0, 50000)[0])
