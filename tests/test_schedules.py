"""Mask schedules (docs/decoding.md, "Mask schedules"): formulas, decode counts, training counts and --mask-ratio
parsing."""

import math

import pytest
import torch

from maskgit_cli.choices import SCHEDULE_ALIASES, SCHEDULES
from maskgit_cli.errors import MaskgitError
from maskgit_cli.schedules import (
    MaskRatio,
    canonical_schedule,
    expected_counts,
    gamma,
    mask_len_after_step,
    parse_mask_ratio,
    training_mask,
    training_mask_count,
)

RATIOS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]


def _formula(name, r, n):
    # Written out independently of the implementation, from docs/decoding.md, "Mask schedules".
    return {
        "cosine": math.cos(math.pi / 2 * r),
        "linear": 1 - r,
        "square": 1 - r**2,
        "cubic": 1 - r**3,
        "sqrt": 1 - r**0.5,
        "logarithm": -math.log2(r) / math.log2(n),
        "exp": 1 - 2 ** (-math.log2(n) * (1 - r)),
        "arccos": math.acos(r) / (math.pi / 2),
    }[name]


def test_schedule_names():
    assert set(SCHEDULES) == {"cosine", "linear", "square", "logarithm", "cubic", "sqrt", "exp", "arccos"}
    assert SCHEDULE_ALIASES == {
        "uniform": "linear",
        "pow2": "square",
        "pow3": "cubic",
        "pow0.5": "sqrt",
        "log": "logarithm",
    }


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("n", [7, 256])
def test_gamma_matches_formula(name, n):
    for r in RATIOS:
        want = min(max(_formula(name, r, n), 1e-6), 1.0)
        assert gamma(name, r, n) == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_gamma_tensor_matches_float(name):
    n = torch.tensor([2, 7, 60, 256, 256, 100])
    r = torch.tensor([0.0, 0.1, 0.3, 0.5, 1.0, 0.875], dtype=torch.float64)
    got = gamma(name, r, n)
    assert got.dtype == torch.float64 and got.shape == (6,)
    for i in range(6):
        assert got[i].item() == pytest.approx(gamma(name, r[i].item(), int(n[i])), rel=1e-14, abs=1e-15)
    # scalar r with per-sample N broadcasts to the batch shape
    assert gamma(name, 0.5, n).shape == (6,)


def test_gamma_clipping():
    for name in SCHEDULES:
        for r in [0.0, 1e-9, 0.5, 1.0]:
            g = gamma(name, r, 256)
            assert 1e-6 <= g <= 1.0
        assert gamma(name, 1.0, 256) == 1e-6  # every schedule reaches 0 at r = 1 -> clipped
    assert gamma("logarithm", 0.0, 256) == 1.0  # -log2(0) = inf -> clipped
    assert gamma("cosine", 0.0) == 1.0
    t = gamma("logarithm", torch.tensor([0.0, 1.0]), 256)
    assert t.tolist() == [1.0, 1e-6]


def test_aliases_and_case():
    for alias, name in SCHEDULE_ALIASES.items():
        assert canonical_schedule(alias) == name
        assert gamma(alias, 0.3, 100) == gamma(name, 0.3, 100)
    assert canonical_schedule(" Cosine ") == "cosine"


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(MaskgitError) as e:
        gamma("cosinus", 0.5)
    msg = str(e.value)
    assert "cosinus" in msg and "\n" not in msg
    for name in list(SCHEDULES) + list(SCHEDULE_ALIASES):
        assert name in msg


def test_log_and_exp_need_n():
    for name in ("log", "exp"):
        with pytest.raises(ValueError):
            gamma(name, 0.5)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("T", [1, 4, 8, 12])
@pytest.mark.parametrize("N", [1, 2, 7, 60, 256])
def test_expected_counts_monotone_and_end_at_zero(name, T, N):
    counts = expected_counts(name, T, N)
    assert len(counts) == T and counts[-1] == 0
    prev = N
    for step, c in enumerate(counts):
        assert 0 <= c <= prev
        if prev > 1:
            assert c < prev  # every step fills at least one token
        elif prev == 1 and step < T - 1:
            assert c == 1  # official clamp: the last masked token waits for the last step
        prev = c
    if T > 1 and N > 1:
        assert counts[0] >= 1  # ... and keeps at least one masked before the last step


def test_hand_computed_counts():
    # square: floor(256 * (1 - (t/8)^2)) = 252, 240, 220, 192, 156, 112, 60, then the last step fills all
    assert expected_counts("square", 8, 256) == [252, 240, 220, 192, 156, 112, 60, 0]
    assert expected_counts("pow2", 8, 256) == [252, 240, 220, 192, 156, 112, 60, 0]
    # cosine: floor(100 * cos(pi/2 * t/8)) = floor(98.08, 92.39, 83.15, 70.71, 55.56, 38.27, 19.51)
    assert expected_counts("cosine", 8, 100) == [98, 92, 83, 70, 55, 38, 19, 0]
    # clamp to n_still_masked - 1, and the official single-token rule: the last masked token waits for the end
    assert expected_counts("linear", 8, 2) == [1, 1, 1, 1, 1, 1, 1, 0]
    assert expected_counts("cosine", 4, 1) == [1, 1, 1, 0]
    assert expected_counts("cosine", 1, 256) == [0]
    assert expected_counts("cosine", 8, 0) == [0] * 8


def test_mask_len_edge_cases():
    assert mask_len_after_step("cosine", 7, 8, 256, 256) == 0  # last step
    assert mask_len_after_step("cosine", 0, 8, 256, 1) == 1  # a single masked token stays masked (official)
    assert mask_len_after_step("cosine", 0, 8, 256, 0) == 0
    assert mask_len_after_step("cosine", 0, 8, 256, 5) == 4  # clamp to n_still_masked - 1
    assert mask_len_after_step("linear", 6, 8, 4, 3) == 1  # floor(4 * 1/8) = 0 -> at least 1
    with pytest.raises(ValueError):
        mask_len_after_step("cosine", 8, 8, 256, 256)


@pytest.mark.parametrize("name", ["cosine", "log", "exp", "sqrt"])
def test_mask_len_vectorised_matches_scalar(name):
    n = torch.tensor([0, 1, 2, 7, 60, 100, 256, 256])
    T = 8
    still = n.clone()
    trajectory = []
    for t in range(T):
        new = mask_len_after_step(name, t, T, n, still)
        assert new.dtype == torch.long and new.shape == n.shape
        for i in range(len(n)):
            assert new[i].item() == mask_len_after_step(name, t, T, int(n[i]), int(still[i]))
        trajectory.append(new)
        still = new
    per_sample = torch.stack(trajectory, 1).tolist()  # per-sample N: same as each sample decoded alone
    assert per_sample == [expected_counts(name, T, ni) for ni in n.tolist()]


# ---------------------------------------------------------------------------------------------------------
# training


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_training_count_bounds_and_reproducible(name):
    N, B = 256, 400
    c1 = training_mask_count(name, N, B, torch.Generator().manual_seed(3))
    c2 = training_mask_count(name, N, B, torch.Generator().manual_seed(3))
    assert c1.dtype == torch.long and c1.shape == (B,)
    assert torch.equal(c1, c2)
    assert int(c1.min()) >= 1 and int(c1.max()) <= N
    assert len(set(c1.tolist())) > 20  # actually random


def test_training_count_paper_rule():
    # r ~ U[0,1), count = ceil(gamma(r) N): for cosine E[gamma] = 2/pi
    c = training_mask_count("cosine", 256, 20000, torch.Generator().manual_seed(0))
    assert c.double().mean().item() / 256 == pytest.approx(2 / math.pi, abs=0.01)
    g = torch.Generator().manual_seed(5)
    u = torch.rand(10, generator=g, dtype=torch.float64)
    c = training_mask_count("square", 100, 10, torch.Generator().manual_seed(5))
    assert c.tolist() == [max(1, math.ceil((1 - x**2) * 100 - 1e-9)) for x in u.tolist()]
    # N = 1: always exactly one token
    assert training_mask_count("log", 1, 50, torch.Generator().manual_seed(0)).tolist() == [1] * 50


def test_training_count_uniform_spec():
    N = 256
    c = training_mask_count("uniform:0.2,0.6", N, 5000, torch.Generator().manual_seed(1))
    assert int(c.min()) >= math.ceil(0.2 * N) and int(c.max()) <= math.ceil(0.6 * N)
    assert c.double().mean().item() / N == pytest.approx(0.4, abs=0.01)
    fixed = training_mask_count("uniform:0.5,0.5", N, 10, torch.Generator().manual_seed(1))
    assert fixed.tolist() == [128] * 10
    assert training_mask_count("uniform:0,0", N, 4).tolist() == [1] * 4  # at least one


def test_training_mask_matches_counts():
    m = training_mask("cosine", 16, 256, torch.Generator().manual_seed(7))
    c = training_mask_count("cosine", 256, 16, torch.Generator().manual_seed(7))
    assert m.dtype == torch.bool and m.shape == (16, 256)
    assert m.sum(1).tolist() == c.tolist()


def test_parse_mask_ratio_good():
    assert parse_mask_ratio("Cosine") == MaskRatio("schedule", "cosine")
    assert parse_mask_ratio("pow2").schedule == "square"
    assert parse_mask_ratio("uniform") == MaskRatio("schedule", "linear")
    u = parse_mask_ratio(" uniform:0.1, 0.9 ")
    assert (u.kind, u.low, u.high) == ("uniform", 0.1, 0.9)
    assert str(u) == "uniform:0.1,0.9" and str(parse_mask_ratio("log")) == "logarithm"
    assert parse_mask_ratio(u) is u


@pytest.mark.parametrize(
    "spec",
    [
        "cosinus",
        "",
        "uniform:",
        "uniform:0.5",
        "uniform:a,b",
        "uniform:0.1,0.2,0.3",
        "uniform:0.9,0.1",
        "uniform:-0.1,0.5",
        "uniform:0.1,1.5",
        "gauss:0.1,0.2",
    ],
)
def test_parse_mask_ratio_bad(spec):
    with pytest.raises(MaskgitError) as e:
        parse_mask_ratio(spec)
    assert "--mask-ratio" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MaskgitError):
        training_mask_count(spec, 256, 2)
