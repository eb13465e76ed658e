import importlib.util
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


def _random_pair(rng, n, h, w, kind):
    """(a, b) channels-last, uint8 or float in [0,1]: noise, a smooth gradient, or flat areas with a step."""
    if kind == "uint8":
        a = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        return a, np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    if kind == "float":
        a = rng.random((n, h, w, 3))
        return a, np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    if kind == "smooth":
        a = np.cumsum(rng.random((n, h, w, 3)), axis=1)
        a /= a.max()
        return a, 0.9 * a + 0.05
    a = np.full((n, h, w, 3), 0.5)  # flat: variances ~0, the most rounding-sensitive case
    b = a.copy()
    b[:, h // 2 :] = 0.51
    return a, b


def _skimage_ssim(a, b, mask=None):
    """The reference: scikit-image per image, on [0,1] floats (mask: mean of the channel-averaged full map)."""
    from skimage.metrics import structural_similarity

    a = a / 255.0 if a.dtype == np.uint8 else a
    b = b / 255.0 if b.dtype == np.uint8 else b
    out = []
    for i in range(len(a)):
        if mask is None:
            out.append(structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0))
        else:
            _, smap = structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0, full=True)
            selected = smap.mean(axis=-1)[mask[i]]
            out.append(selected.mean() if selected.size else math.nan)
    return np.array(out)


@pytest.mark.parametrize("h,w", [(7, 7), (7, 12), (9, 13), (13, 9), (16, 16), (31, 8), (64, 64)])
@pytest.mark.parametrize("kind", ["uint8", "float", "smooth", "flat"])
def test_ssim_matches_scikit_image(h, w, kind):
    pytest.importorskip("skimage")
    rng = np.random.default_rng(h * 100 + w)
    a, b = _random_pair(rng, 5, h, w, kind)
    expected = _skimage_ssim(a, b)
    # measured: <= 1e-14 on noise and gradients, <= 5e-13 on flat images (scipy's running sums round differently)
    np.testing.assert_allclose(ssim(a, b), expected, rtol=0, atol=1e-11)
    # channels-first torch tensors give the same numbers
    ta, tb = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) for x in (a, b))
    np.testing.assert_allclose(ssim(ta, tb), expected, rtol=0, atol=1e-11)
    # masked: per-image masks, one of them empty (nan in both); and one mask shared by the batch
    masks = rng.random((5, h, w)) < 0.3
    masks[1] = False
    masks[2, 0, 0] = True  # a corner pixel, where the border handling matters most
    got, want = ssim(a, b, mask=masks), _skimage_ssim(a, b, mask=masks)
    assert math.isnan(got[1]) and math.isnan(want[1])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11)
    shared = masks[0]
    want = _skimage_ssim(a, b, mask=np.broadcast_to(shared, masks.shape))
    np.testing.assert_allclose(ssim(ta, tb, mask=torch.from_numpy(shared)), want, rtol=0, atol=1e-11)


def _fixed_pair():
    """A fixed 64x64 prediction/reference pair (blobs on white, noise, a darkened hole) and its hole mask."""
    rng = np.random.default_rng(2026)
    yy, xx = np.mgrid[0:64, 0:64]
    ref = np.full((64, 64, 3), 255.0)
    for _ in range(4):
        cy, cx, r = rng.uniform(8, 56, 2).tolist() + [rng.uniform(5, 20)]
        ref[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 255, 3)
    pred = np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255)
    hole = np.zeros((64, 64), bool)
    hole[16:40, 20:52] = True
    pred[hole] = np.clip(pred[hole] * 0.7 + 40, 0, 255)
    return pred.astype(np.uint8), ref.astype(np.uint8), hole


# scikit-image 0.26.0's values for _fixed_pair (structural_similarity, channel_axis=-1, data_range=1 on /255
# floats; hole: mean of the channel-averaged full map over the hole). The README's and weights/README.md's
# SSIM figures were computed with scikit-image: these pin ssim() to it, with or without scikit-image installed.
FIXED_PAIR_SSIM = 0.6444819529944884
FIXED_PAIR_SSIM_HOLE = 0.637051786531465


def test_ssim_on_a_fixed_pair_equals_scikit_image():
    pred, ref, hole = _fixed_pair()
    whole, in_hole = ssim(pred, ref)[0], ssim(pred, ref, mask=hole)[0]
    assert abs(whole - FIXED_PAIR_SSIM) < 1e-9 and abs(in_hole - FIXED_PAIR_SSIM_HOLE) < 1e-9
    if importlib.util.find_spec("skimage") is not None:
        assert abs(whole - _skimage_ssim(pred[None], ref[None])[0]) < 1e-9
        assert abs(in_hole - _skimage_ssim(pred[None], ref[None], mask=hole[None])[0]) < 1e-9


@pytest.mark.parametrize("h,w", [(6, 6), (6, 20), (20, 6)])
def test_ssim_needs_7x7_images(h, w):
    a = np.zeros((2, h, w, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(a, a)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(a, a, mask=np.ones((h, w), bool))


def test_ssim_batches_larger_than_a_chunk_and_empty_batches():
    rng = np.random.default_rng(1)
    a, b = _random_pair(rng, 21, 12, 10, "uint8")
    np.testing.assert_allclose(ssim(a, b), np.concatenate([ssim(a[i : i + 1], b[i : i + 1]) for i in range(21)]))
    assert ssim(a[:0], b[:0]).shape == (0,)


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
