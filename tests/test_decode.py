"""Iterative decoding: exact per-step counts for every schedule, known tokens fixed, seeds, batch = single."""

import pytest
import torch

from maskgit_cli.choices import SCHEDULES
from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens
from maskgit_cli.decoding.sampler import halton_counts
from maskgit_cli.errors import MaskgitError
from maskgit_cli.schedules import expected_counts

L, V = 256, 64
MASK_ID = V  # tiny_transformer's mask id: the id after its V codes


def make_batch(seed=0, sizes=(256, 200, 37, 5, 1, 0)):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (len(sizes), L), generator=g)
    unknown = torch.zeros(len(sizes), L, dtype=torch.bool)
    for i, n in enumerate(sizes):
        unknown[i, torch.randperm(L, generator=g)[:n]] = True
    return tokens, unknown


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("T", [1, 4, 8])
def test_counts_follow_the_formula_for_full_and_partial_masks(tiny_transformer, schedule, T):
    tokens, unknown = make_batch()
    res = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(schedule=schedule, total_iter=T), MASK_ID)
    for i, n in enumerate(unknown.sum(1).tolist()):
        assert res.still_masked[i].tolist() == expected_counts(schedule, T, n), (schedule, T, n)


@pytest.mark.parametrize("sweet_spot", [1, 3, 7])
def test_sweet_spot_runs_s_steps_and_fills_everything_at_the_last(tiny_transformer, sweet_spot):
    tokens, unknown = make_batch()
    s = DecodeSettings(schedule="square", total_iter=8, sweet_spot=sweet_spot)
    res = decode_tokens(tiny_transformer, tokens, unknown, s, MASK_ID)
    assert res.still_masked.shape == (len(tokens), sweet_spot)
    for i, n in enumerate(unknown.sum(1).tolist()):
        assert res.still_masked[i].tolist() == expected_counts("square", 8, n)[: sweet_spot - 1] + [0]


def test_known_tokens_never_change_and_no_mask_id(tiny_transformer):
    tokens, unknown = make_batch()
    for sampling in ("sample", "argmax"):
        res = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(sampling=sampling), MASK_ID, record=True)
        assert torch.equal(res.tokens[~unknown], tokens[~unknown])
        assert int(res.tokens.max()) < V and int(res.tokens.min()) >= 0
        for pred in res.step_predictions:
            assert torch.equal(pred[~unknown], tokens[~unknown]) and int(pred.max()) < V
        # a position fixed at some step keeps its id for the rest of the decode
        for a, b, mask_a in zip(res.step_predictions, res.step_predictions[1:], res.step_masks):
            assert torch.equal(a[~mask_a], b[~mask_a])


def test_seed_determinism(tiny_transformer):
    tokens, unknown = make_batch()
    a = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(seed=1), MASK_ID).tokens
    b = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(seed=1), MASK_ID).tokens
    c = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(seed=2), MASK_ID).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batch_equals_one_at_a_time(tiny_transformer):
    tokens, unknown = make_batch(sizes=(256, 120, 37, 9))
    ids = torch.tensor([10, 11, 12, 13])
    s = DecodeSettings(schedule="cosine", total_iter=6, seed=7)
    batch = decode_tokens(tiny_transformer, tokens, unknown, s, MASK_ID, image_ids=ids)
    for i in range(len(tokens)):
        one = decode_tokens(
            tiny_transformer, tokens[i : i + 1], unknown[i : i + 1], s, MASK_ID, image_ids=ids[i : i + 1]
        )
        assert torch.equal(one.tokens[0], batch.tokens[i])
        assert torch.equal(one.still_masked[0], batch.still_masked[i])


def test_argmax_does_not_depend_on_the_seed_without_gumbel_noise(tiny_transformer):
    tokens, unknown = make_batch()
    s = dict(sampling="argmax", choice_temperature=0.0)
    a = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(seed=1, **s), MASK_ID).tokens
    b = decode_tokens(tiny_transformer, tokens, unknown, DecodeSettings(seed=2, **s), MASK_ID).tokens
    assert torch.equal(a, b)


def test_bad_settings():
    with pytest.raises(MaskgitError, match="--sweet-spot 9"):
        DecodeSettings(total_iter=8, sweet_spot=9)
    with pytest.raises(MaskgitError, match="--total-iter 0"):
        DecodeSettings(total_iter=0)
    with pytest.raises(MaskgitError, match="--sampling"):
        DecodeSettings(sampling="greedy")
    with pytest.raises(MaskgitError, match="schedule"):
        DecodeSettings(schedule="zigzag")


def test_more_steps_than_tokens_is_refused_before_decoding(tiny_transformer):
    tokens, unknown = make_batch(sizes=(256, 3))
    calls = []

    def model(ids):
        calls.append(1)
        return tiny_transformer(ids)

    mask_id = tiny_transformer.config.mask_token_id  # a plain function as the model: the mask id given
    with pytest.raises(MaskgitError) as e:
        decode_tokens(model, tokens, unknown, DecodeSettings(total_iter=1_000_000), mask_id)
    assert str(e.value) == (
        "--total-iter 1000000: at most 256 steps (the number of tokens per image); each step fills at least one token"
    )
    assert calls == []
    with pytest.raises(MaskgitError, match="--total-iter 257: at most 256 steps"):
        decode_tokens(model, tokens, unknown, DecodeSettings(total_iter=257, sweet_spot=1), mask_id)
    res = decode_tokens(model, tokens, unknown, DecodeSettings(total_iter=256, sweet_spot=2), mask_id)  # the limit
    assert res.still_masked[:, -1].tolist() == [0, 0] and len(calls) == 2


@pytest.mark.parametrize("sweet_spot", [None, 1, 3])
def test_halton_sampler_decodes_with_its_counts_known_tokens_fixed_and_batch_free(tiny_transformer, sweet_spot):
    tokens, unknown = make_batch(sizes=(256, 120, 37, 1, 0))
    ids = torch.tensor([10, 11, 12, 13, 14])
    s = DecodeSettings(schedule="square", total_iter=6, sweet_spot=sweet_spot, sampler="halton", seed=7)
    batch = decode_tokens(tiny_transformer, tokens, unknown, s, MASK_ID, image_ids=ids, record=True)
    for i, n in enumerate(unknown.sum(1).tolist()):
        assert batch.still_masked[i].tolist() == halton_counts(s.steps, n)
    assert torch.equal(batch.tokens[~unknown], tokens[~unknown]) and int(batch.tokens.max()) < V
    assert all(int(p.max()) < V and torch.equal(p[~unknown], tokens[~unknown]) for p in batch.step_predictions)
    for i in range(len(tokens)):
        one = decode_tokens(
            tiny_transformer, tokens[i : i + 1], unknown[i : i + 1], s, MASK_ID, image_ids=ids[i : i + 1]
        )
        assert torch.equal(one.tokens[0], batch.tokens[i])
    # the schedule and T play no part: only the steps run
    other = DecodeSettings(schedule="cosine", total_iter=8, sweet_spot=s.steps, sampler="halton", seed=7)
    assert torch.equal(
        decode_tokens(tiny_transformer, tokens, unknown, other, MASK_ID, image_ids=ids).tokens, batch.tokens
    )
    # and it is not the confidence sampler's result
    if s.steps > 1:
        conf = DecodeSettings(schedule="square", total_iter=6, sweet_spot=sweet_spot, seed=7)
        assert not torch.equal(
            decode_tokens(tiny_transformer, tokens, unknown, conf, MASK_ID, image_ids=ids).tokens, batch.tokens
        )


def test_any_callable_is_a_model_given_the_mask_id(tiny_transformer):
    """decode_tokens takes the mask id (as google-research's MaskGIT decode does): a function of ids -> logits with
    no config decodes as the transformer does."""
    tokens, unknown = make_batch(sizes=(200, 37))
    s = DecodeSettings(schedule="cosine", total_iter=4, seed=3)
    mask_id = tiny_transformer.config.mask_token_id
    assert mask_id == MASK_ID
    seen = []

    def logits(ids):
        seen.append(int((ids == mask_id).sum()))
        return tiny_transformer(ids)

    res = decode_tokens(logits, tokens, unknown, s, mask_id)
    assert torch.equal(res.tokens, decode_tokens(tiny_transformer, tokens, unknown, s, MASK_ID).tokens)
    assert seen[0] == int(unknown.sum()) and len(seen) == 4


# Each generated token's confidence (what `--fill smooth-prior` spends): the probability its code had at the step
# that fixed it; 1 for the known tokens.


def test_confidence_is_the_drawn_codes_probability_when_fixed():
    V, L, mask_id = 4, 9, 4
    logits = torch.randn(2, L, V + 1, generator=torch.Generator().manual_seed(0))

    def model(ids):  # the same logits at every step: a token's probability does not depend on when it is fixed
        return logits.clone()

    tokens = torch.zeros(2, L, dtype=torch.int64)
    unknown = torch.zeros(2, L, dtype=torch.bool)
    unknown[0, :5], unknown[1, 3:] = True, True
    for settings in (DecodeSettings(total_iter=3, sampling="argmax", temperature=1.0), DecodeSettings(total_iter=3)):
        result = decode_tokens(model, tokens, unknown, settings, mask_id)
        probs = (logits[..., :V] / settings.temperature).softmax(-1)
        want = probs.gather(-1, result.tokens.unsqueeze(-1)).squeeze(-1)
        assert torch.equal(result.confidence[~unknown], torch.ones(int((~unknown).sum())))
        torch.testing.assert_close(result.confidence[unknown], want[unknown])
    argmax = decode_tokens(model, tokens, unknown, DecodeSettings(total_iter=3, sampling="argmax"), mask_id)
    assert (argmax.confidence[unknown] > 1 / V).all()  # the most likely of V codes
