"""The decoding step without a model: random logits in, the official rule's (or the Halton sampler's) grid out;
extreme values and broken models through `maskgit inpaint`."""

import json
import math

import pytest
import torch

from maskgit_cli.choices import SCHEDULES
from maskgit_cli.decoding.decode import DecodeSettings
from maskgit_cli.decoding.sampler import (
    ConfidenceSampler,
    HaltonSampler,
    draw,
    halton_counts,
    halton_order,
    hashed_uniform,
    make_sampler,
)
from maskgit_cli.errors import MaskgitError
from maskgit_cli.schedules import expected_counts
from maskgit_cli.vqgan.code_patches import CODE_PATCHES_KEY
from maskgit_cli.weights import save_model

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


# ---------------------------------------------------------------------------------------------------------
# The Halton sampler (docs/decoding.md, "The Halton sampler")


def radical_inverse(k, base):
    value, scale = 0.0, 1.0
    while k:
        k, digit = divmod(k, base)
        scale /= base
        value += digit * scale
    return value


def reference_order(side, points=10_000):
    """The reference's order, rebuilt here: points k = 1..10,000, x in base 2 (the row), y in base 3 (the column),
    scaled by the side and floored, repeats dropped keeping the first."""
    order = []
    for k in range(1, points + 1):
        pos = int(radical_inverse(k, 2) * side) * side + int(radical_inverse(k, 3) * side)
        if pos not in order:
            order.append(pos)
    return order


def expected_revealed(i, steps, n):
    """The count rule, written out: ratio = (i+1)/S, r = 1 - arccos(ratio)/(pi/2), max(i+1, int(r*N)) capped at N."""
    if i == steps - 1:
        return n
    r = 1 - math.acos((i + 1) / steps) / (math.pi / 2)
    return min(n, max(i + 1, int(r * n)))


def run_halton(settings, tokens, unknown, image_ids=None, logits=None, bias=None):
    """Drive HaltonSampler.step; ``logits`` (S,B,L,V+1) default to fresh random ones per step."""
    g = torch.Generator().manual_seed(0)
    sampler = make_sampler(settings, MASK)
    assert isinstance(sampler, HaltonSampler)
    ids = torch.where(unknown, torch.full_like(tokens, MASK), tokens)
    n_unknown = unknown.sum(1)
    image_ids = torch.arange(len(tokens)) if image_ids is None else image_ids
    outs = []
    for t in range(settings.steps):
        lg = torch.randn(len(tokens), L, V + 1, generator=g) if logits is None else logits[t]
        out = sampler.step(lg, t, ids, unknown, n_unknown, image_ids, bias)
        ids, unknown = out.ids, out.unknown
        outs.append(out)
    return outs


def test_halton_order_is_a_permutation_and_matches_the_reference():
    order = halton_order(16).tolist()
    assert sorted(order) == list(range(256))
    # (row, column) of k = 1: (1/2, 1/3) * 16; k = 2: (1/4, 2/3); k = 3: (3/4, 1/9); k = 4: (1/8, 4/9)
    assert [divmod(p, 16) for p in order[:4]] == [(8, 5), (4, 10), (12, 1), (2, 7)]
    assert order == reference_order(16)
    assert halton_order(8).tolist() == reference_order(8)
    for side in (1, 2, 5, 7, 32):
        assert sorted(halton_order(side).tolist()) == list(range(side * side))


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8])
def test_halton_counts_follow_the_rule(steps):
    sizes = (64, 40, 7, 2, 1, 0)
    tokens, unknown = grid(sizes)
    outs = run_halton(DecodeSettings(total_iter=8, sweet_spot=steps, sampler="halton"), tokens, unknown)
    for i, n in enumerate(sizes):
        counts = [int(out.unknown[i].sum()) for out in outs]
        assert counts == [n - expected_revealed(t, steps, n) for t in range(steps)], (n, steps)
        assert counts == halton_counts(steps, n)
    # the rule by hand for N = 100, S = 8 (and it ignores T: only the steps run count)
    assert halton_counts(8, 100) == [93, 84, 76, 67, 58, 47, 33, 0]
    assert halton_counts(1, 5) == [0] and halton_counts(3, 0) == [0, 0, 0] and halton_counts(4, 1) == [0, 0, 0, 0]


def test_halton_reveals_the_unknown_tokens_in_halton_order_and_keeps_the_known_ones():
    tokens, unknown = grid()
    outs = run_halton(DecodeSettings(total_iter=6, sampler="halton"), tokens, unknown)
    order = halton_order(8)
    before = unknown
    for t, out in enumerate(outs):
        assert torch.equal(out.sampled[~unknown], tokens[~unknown])  # known tokens never rewritten
        assert (out.sampled != MASK).all()  # a draw everywhere still masked, never the mask id
        assert torch.equal(out.ids == MASK, out.unknown)
        assert not (out.unknown & ~before).any()  # a revealed token stays revealed
        assert torch.equal(out.ids[~out.unknown], out.sampled[~out.unknown])
        for i in range(len(tokens)):
            unknown_in_order = [p for p in order.tolist() if unknown[i, p]]
            revealed = expected_revealed(t, 6, len(unknown_in_order))
            assert set((~out.unknown[i] & unknown[i]).nonzero().flatten().tolist()) == set(unknown_in_order[:revealed])
        before = out.unknown
    assert not outs[-1].unknown.any() and torch.equal(outs[-1].ids[~unknown], tokens[~unknown])


def test_halton_results_do_not_depend_on_batching():
    tokens, unknown = grid(sizes=(64, 40, 7))
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(4, len(tokens), L, V + 1, generator=g)
    bias = torch.randn(len(tokens), L, V, generator=g)
    ids = torch.tensor([10, 11, 12])
    s = DecodeSettings(total_iter=4, sampler="halton", seed=3)
    batch = run_halton(s, tokens, unknown, ids, logits, bias)
    for i in range(len(tokens)):
        one = run_halton(
            s, tokens[i : i + 1], unknown[i : i + 1], ids[i : i + 1], logits[:, i : i + 1], bias[i : i + 1]
        )
        for a, b in zip(one, batch):
            assert torch.equal(a.ids[0], b.ids[i]) and torch.equal(a.unknown[0], b.unknown[i])


def test_halton_guidance_and_argmax():
    tokens, unknown = grid(sizes=(64,))
    bias = torch.full((1, L, V), -1e4)
    bias[..., 7] = 0.0  # only code 7 is allowed
    outs = run_halton(DecodeSettings(total_iter=3, sampler="halton"), tokens, unknown, bias=bias)
    assert (outs[-1].ids == 7).all()
    logits = torch.randn(2, 1, L, V + 1, generator=torch.Generator().manual_seed(1))
    outs = run_halton(DecodeSettings(total_iter=2, sampler="halton", sampling="argmax"), tokens, unknown, logits=logits)
    first = ~outs[0].unknown
    assert torch.equal(outs[0].ids[first], logits[0, ..., :V].argmax(-1)[first])
    assert torch.equal(outs[1].ids[~first], logits[1, ..., :V].argmax(-1)[~first])


def test_one_step_is_the_same_for_both_samplers():
    """S = 1 fills every masked token with its first draw whatever the sampler (sweep computes it once)."""
    tokens, unknown = grid()
    logits = torch.randn(1, len(tokens), L, V + 1, generator=torch.Generator().manual_seed(2))
    bias = torch.randn(len(tokens), L, V, generator=torch.Generator().manual_seed(4))
    halton = run_halton(
        DecodeSettings(total_iter=5, sweet_spot=1, sampler="halton"), tokens, unknown, None, logits, bias
    )
    ids = torch.where(unknown, torch.full_like(tokens, MASK), tokens)
    conf = make_sampler(DecodeSettings(total_iter=3, sweet_spot=1), MASK)
    assert isinstance(conf, ConfidenceSampler)
    out = conf.step(logits[0], 0, ids, unknown, unknown.sum(1), torch.arange(len(tokens)), bias)
    assert torch.equal(out.ids, halton[0].ids) and not out.unknown.any()


def test_sampler_setting_is_checked():
    with pytest.raises(MaskgitError, match="--sampler bogus: expected one of confidence, halton"):
        DecodeSettings(sampler="bogus")
    assert DecodeSettings().sampler == "confidence"


def test_temperature_sharpens_the_draws_towards_argmax():
    """temperature 1 is the official draw (bit for bit), a low one draws the argmax, a high one spreads the draws."""
    tokens, unknown = grid(sizes=(64, 64))
    logits = torch.randn(2, L, V + 1, generator=torch.Generator().manual_seed(5)) * 2
    ids = torch.full_like(tokens, MASK)

    def first_draws(**kw):
        settings = DecodeSettings(total_iter=1, **kw)
        return ConfidenceSampler(settings, MASK).step(logits, 0, ids, unknown, unknown.sum(1), torch.arange(2)).ids

    argmax = logits[..., :V].argmax(-1)
    u = hashed_uniform(0, torch.arange(2), 0, 0, L)  # stream 0 of step 0: the draws' uniforms
    official = draw(logits[..., :V].softmax(-1), u, "sample")  # the reference: softmax at temperature 1
    assert torch.equal(first_draws(temperature=1.0), official)
    assert torch.equal(first_draws(), first_draws(temperature=0.5))  # the default, chosen on validation
    assert torch.equal(first_draws(temperature=1e-3), argmax)
    hits = [(first_draws(temperature=t) == argmax).float().mean().item() for t in (4.0, 1.0, 0.25)]
    assert hits[0] < hits[1] < hits[2]


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(MaskgitError, match="--temperature"):
        DecodeSettings(temperature=temperature)


# ---------------------------------------------------------------------------------------------------------
# Extreme values: known tokens never change, the mask id is never drawn (issue 28, items 6 and 9)


def known_kept(outs, tokens, unknown):
    for out in outs:
        assert torch.equal(out.sampled[~unknown], tokens[~unknown])
        assert torch.equal(out.ids[~unknown], tokens[~unknown])
        assert not (out.unknown & ~unknown).any()
        assert (out.sampled != MASK).all()


@pytest.mark.parametrize("ranking,counts", [("logp", "clamped"), ("p", "floor")])
def test_huge_choice_temperature_never_touches_known_tokens(ranking, counts):
    """A choice temperature so large that confidences overflow to +-inf ties unknown positions with the known
    ones (+inf): the known ones are still never masked again."""
    tokens, unknown = grid()
    settings = DecodeSettings(total_iter=6, choice_temperature=1e308, ranking=ranking, counts=counts)
    counts_seen, outs = run_steps(settings, tokens, unknown)
    known_kept(outs, tokens, unknown)
    for i, n in enumerate(unknown.sum(1).tolist()):  # the schedule's counts still hold
        assert [c[i] for c in counts_seen] == expected_counts("cosine", 6, n, counts)


@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0])
def test_choice_temperature_must_be_finite_and_non_negative(value):
    with pytest.raises(MaskgitError, match=r"^--choice-temperature .*: must be a finite number >= 0$"):
        DecodeSettings(choice_temperature=value)


@pytest.mark.parametrize("sampler", ["confidence", "halton"])
@pytest.mark.parametrize("temperature", [1e-300, 1e-45, 5e-324])
def test_a_vanishing_temperature_draws_the_argmax_never_the_mask_id(sampler, temperature):
    """logits / temperature overflows float32 (softmax NaN): the draw is its limit, the argmax."""
    tokens, unknown = grid(sizes=(64, 64, 30))
    logits = torch.randn(3, L, V + 1, generator=torch.Generator().manual_seed(5))
    logits[..., MASK] = 100.0  # the mask id is the most likely: still never drawn
    ids = torch.where(unknown, torch.full_like(tokens, MASK), tokens)
    settings = DecodeSettings(total_iter=1, temperature=temperature, sampler=sampler)
    out = make_sampler(settings, MASK).step(logits, 0, ids, unknown, unknown.sum(1), torch.arange(3))
    assert torch.equal(out.ids[unknown], logits[..., :V].argmax(-1)[unknown])
    assert torch.equal(out.ids[~unknown], tokens[~unknown])


def test_infinite_logits_draw_among_the_infinite_codes():
    tokens, unknown = grid(sizes=(64,))
    logits = torch.randn(1, L, V + 1, generator=torch.Generator().manual_seed(6))
    logits[..., 3] = math.inf
    logits[0, :10, 8] = math.inf  # two codes at +inf in the first 10 positions
    out = ConfidenceSampler(DecodeSettings(total_iter=1), MASK).step(
        logits, 0, torch.full_like(tokens, MASK), unknown, unknown.sum(1), torch.arange(1)
    )
    assert set(out.ids[0, :10].tolist()) <= {3, 8} and (out.ids[0, 10:] == 3).all()


@pytest.mark.parametrize("sampler", ["confidence", "halton"])
def test_nan_logits_are_one_clear_error(sampler):
    tokens, unknown = grid(sizes=(64,))
    logits = torch.randn(1, L, V + 1)
    logits[0, 5, 2] = math.nan
    with pytest.raises(MaskgitError, match=r"^the transformer's logits are NaN at step 1: its weights"):
        make_sampler(DecodeSettings(total_iter=2, sampler=sampler), MASK).step(
            logits, 0, torch.full_like(tokens, MASK), unknown, unknown.sum(1), torch.arange(1)
        )


# ---------------------------------------------------------------------------------------------------------
# The same cases through `maskgit inpaint` (issue 28, items 6 and 9): a result, or one line


@pytest.fixture
def inpaint_case(cli, tiny_transformer_file, tiny_vqgan_file, make_images, tmp_path):
    """``inpaint_case(*options, transformer=None)``: `maskgit inpaint` of two tiny images with box masks and the tiny
    models (another transformer file if given); returns (result, output folder)."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    make_images(images, 2)
    assert cli("masks", images, "-o", masks, "--kind", "box").exit_code == 0

    def run(*options, transformer=None):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        r = cli(
            "inpaint", "--images", images, "--masks", masks, "--transformer", transformer or tiny_transformer_file,
            "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--grids", "0", *options,
        )  # fmt: skip
        return r, out

    return run


@pytest.mark.parametrize(
    "options", [("--temperature", "1e-300"), ("--pixel-guidance", "1e308"), ("--choice-temperature", "1e308")]
)
def test_extreme_values_are_inpainted(inpaint_case, options):
    r, out = inpaint_case(*options)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["image_000.png", "image_001.png"]
    assert json.loads((out / "report.json").read_text())["images"][0]["still_masked"][-1] == 0


def test_an_infinite_choice_temperature_is_one_line(inpaint_case):
    r, out = inpaint_case("--choice-temperature", "inf")
    assert r.exit_code == 2 and not out.exists()  # a bad option value (issue 28, items 6 and 13)
    assert r.stderr == "Error: --choice-temperature inf: must be a finite number >= 0\n"


def test_a_transformer_with_a_nan_weight_is_refused_naming_the_tensor(inpaint_case, tiny_transformer, tmp_path):
    with torch.no_grad():
        tiny_transformer.blocks[0].attn.qkv.weight[3, 5] = math.nan
    path = tmp_path / "nan.safetensors"
    save_model(path, tiny_transformer, "transformer")
    r, out = inpaint_case(transformer=path)
    assert r.exit_code == 1 and not out.exists()
    assert r.stderr == (
        f"Error: {path}: weights with NaN or infinite values: blocks.0.attn.qkv.weight (1 of "
        f"{tiny_transformer.blocks[0].attn.qkv.weight.numel()} values)\n"
    )


def test_a_nan_code_patch_is_refused_naming_the_file(inpaint_case, tiny_transformer, tmp_path):
    patches = torch.rand(64, 3, 4, 4)
    patches[7, 1, 2, 3] = math.nan
    path = tmp_path / "nan-patches.safetensors"
    save_model(path, tiny_transformer, "transformer", aux={CODE_PATCHES_KEY: patches})
    r, out = inpaint_case(transformer=path)
    assert r.exit_code == 1 and not out.exists()
    assert (
        r.stderr == f"Error: {path}: code patches with NaN or infinite values: {CODE_PATCHES_KEY} (1 of 3072 values)\n"
    )
    r, out = inpaint_case("--pixel-guidance", "0", transformer=path)  # no guidance: the patches are not read
    assert r.exit_code == 0, r.output
