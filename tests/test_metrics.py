import math

import numpy as np
import pytest
import torch

from maskgit_cli.metrics import codebook_usage, psnr, ssim


def _pair(seed=0, n=3, size=16):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_matches_formula_uint8_and_float():
    a, b = _pair()
    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(1)
    expected = 10 * np.log10(255.0**2 / mse)
    np.testing.assert_allclose(psnr(a, b), expected, rtol=1e-10)
    # float [0,1] channels-first torch tensors give the same numbers
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).double() / 255
    np.testing.assert_allclose(psnr(ta, tb), expected, rtol=1e-10)
    # a single image is a batch of one
    assert psnr(a[0], b[0]).shape == (1,)


def test_psnr_identical_is_inf():
    a, _ = _pair()
    assert np.isinf(psnr(a, a)).all()


def test_masked_psnr_counts_only_masked_pixels():
    a, b = _pair(n=2)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:8, 2:10] = True
    # pixels outside the mask are ignored entirely
    c = b.copy()
    c[:, ~mask] = 0
    np.testing.assert_allclose(psnr(a, b, mask=mask), psnr(a, c, mask=mask))
    mse = ((a[:, mask].astype(np.float64) - b[:, mask]) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(psnr(a, b, mask=mask), 10 * np.log10(255.0**2 / mse), rtol=1e-10)
    # per-image (B,H,W) masks; an empty mask gives nan
    masks = np.stack([mask, np.zeros_like(mask)])
    out = psnr(a, b, mask=masks)
    assert math.isfinite(out[0]) and math.isnan(out[1])


def test_ssim_identical_is_one_and_lower_when_different():
    a, b = _pair(size=32)
    np.testing.assert_allclose(ssim(a, a), 1.0)
    s = ssim(a, b)
    assert s.shape == (3,) and (s < 1).all()
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:20, 8:20] = True
    np.testing.assert_allclose(ssim(a, a, mask=mask), 1.0)
    assert (ssim(a, b, mask=mask) < 1).all()


def test_shape_mismatch_is_an_error():
    a, _ = _pair()
    with pytest.raises(ValueError):
        psnr(a, a[:2])


def test_codebook_usage_and_perplexity():
    used, ppl = codebook_usage(torch.tensor([[0, 1], [2, 3]]), 8)
    assert used == 0.5 and ppl == pytest.approx(4.0)
    used, ppl = codebook_usage(np.zeros((5, 4, 4), dtype=np.int64), 16)
    assert used == 1 / 16 and ppl == pytest.approx(1.0)
    # 3 x code 0 and 1 x code 1: exp(H), H = -(3/4 ln 3/4 + 1/4 ln 1/4)
    used, ppl = codebook_usage(torch.tensor([0, 0, 0, 1]), 4)
    assert used == 0.5 and ppl == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    with pytest.raises(ValueError):
        codebook_usage(torch.tensor([0, 4]), 4)
