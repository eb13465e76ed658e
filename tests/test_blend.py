"""Poisson blending (`--blend poisson`): the exact solution of the discrete equations, known pixels untouched, batch
independence, and its place in inpainting (composite only; the lab's settings turn it off). The biharmonic fill and
the smooth prior of `--fill smooth-prior`: scikit-image's fill, slopes carried into the hole, weights from the
tokens' confidence."""

import pytest
import torch

from maskgit_cli.decoding.blend import (
    PRIOR_GAMMA,
    PRIOR_TAU,
    biharmonic_fill,
    confidence_weights,
    poisson_blend,
    smooth_prior,
)
from maskgit_cli.decoding.inpaint import LAB_SETTINGS, InpaintSettings, finish
from maskgit_cli.errors import MaskgitError


def dense_solution(decoded, known, hole):
    """decoded + u with u harmonic in the hole and u = known - decoded at the known pixels, one channel, by a dense
    solve of the 4-neighbour equations (pixels outside the image left out)."""
    h, w = hole.shape
    cells = [(y, x) for y in range(h) for x in range(w) if hole[y, x]]
    index = {p: i for i, p in enumerate(cells)}
    a = torch.zeros(len(cells), len(cells), dtype=torch.float64)
    b = torch.zeros(len(cells), dtype=torch.float64)
    d = (known - decoded).double()
    for i, (y, x) in enumerate(cells):
        for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= yy < h and 0 <= xx < w:
                a[i, i] += 1
                if hole[yy, xx]:
                    a[i, index[(yy, xx)]] -= 1
                else:
                    b[i] += d[yy, xx]
    u = torch.linalg.solve(a, b)
    out = known.double().clone()
    for i, (y, x) in enumerate(cells):
        out[y, x] = decoded[y, x] + u[i]
    return out.clamp(0, 1)


def random_case(seed, b=3, size=12):
    g = torch.Generator().manual_seed(seed)
    known = torch.rand(b, 3, size, size, generator=g) * 0.5 + 0.25
    decoded = known + 0.1 * torch.randn(b, 3, size, size, generator=g)  # a decode that misses the known pixels too
    holes = torch.zeros(b, size, size, dtype=torch.bool)
    holes[:, 3:9, 2:7] = True
    holes[1, 0:4, 8:12] = True  # a hole at the image's corner
    holes[2, 5, :] = True  # a line across the whole image
    return decoded, known, holes


def test_poisson_blend_solves_the_discrete_equations():
    decoded, known, holes = random_case(0)
    out = poisson_blend(decoded, known, holes)
    for i in range(len(out)):
        for ch in range(3):
            want = dense_solution(decoded[i, ch], known[i, ch], holes[i])
            torch.testing.assert_close(out[i, ch].double(), want, rtol=0, atol=1e-5)
    assert torch.equal(out[~holes[:, None].expand_as(out)], known[~holes[:, None].expand_as(known)])


def test_a_colour_offset_is_removed_and_a_seamless_decode_kept():
    known = torch.rand(2, 3, 16, 16) * 0.5 + 0.25
    holes = torch.zeros(2, 16, 16, dtype=torch.bool)
    holes[:, 4:12, 4:12] = True
    out = poisson_blend(known + 0.1, known, holes)  # the decode is the truth, 0.1 too bright everywhere
    torch.testing.assert_close(out, known, rtol=0, atol=1e-5)
    decoded = known.clone()
    decoded[holes[:, None].expand_as(known)] = 0.9  # agrees with the known pixels: nothing to correct
    torch.testing.assert_close(poisson_blend(decoded, known, holes), decoded, rtol=0, atol=1e-6)


def test_each_image_is_blended_on_its_own():
    decoded, known, holes = random_case(1)
    out = poisson_blend(decoded, known, holes)
    for i in range(len(out)):
        assert torch.equal(poisson_blend(decoded[i : i + 1], known[i : i + 1], holes[i : i + 1]), out[i : i + 1])
    none = torch.zeros_like(holes)
    assert torch.equal(poisson_blend(decoded, known, none), known)


def test_finish_follows_the_settings():
    decoded, known, holes = random_case(2)
    assert torch.equal(finish(decoded, known, holes, InpaintSettings(composite=False)), decoded)
    pasted = finish(decoded, known, holes, InpaintSettings(blend="none"))
    assert torch.equal(pasted, torch.where(holes[:, None].expand_as(known), decoded, known))
    blended = poisson_blend(decoded, known, holes)
    assert torch.equal(finish(decoded, known, holes, InpaintSettings(fill="sharp")), blended)
    assert torch.equal(finish(decoded, known, holes, InpaintSettings()), blended)  # no confidence: the draws shown
    confidence = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(finish(decoded, known, holes, InpaintSettings(fill="sharp"), confidence), blended)
    prior = finish(decoded, known, holes, InpaintSettings(), confidence)
    assert torch.equal(prior, smooth_prior(blended, known, holes, confidence)) and not torch.equal(prior, blended)
    assert InpaintSettings.from_options(lab=True).fill == LAB_SETTINGS["fill"] == "sharp"
    assert InpaintSettings.from_options(lab=True).draws == LAB_SETTINGS["draws"] == 1  # the lab decodes once
    assert InpaintSettings().draws == 4
    assert InpaintSettings.from_options(lab=True).blend == LAB_SETTINGS["blend"] == "none"
    with pytest.raises(MaskgitError, match="--blend seamless: expected one of poisson, none"):
        InpaintSettings(blend="seamless")


def test_biharmonic_fill_is_close_to_scikit_image():
    restoration = pytest.importorskip("skimage.restoration")
    g = torch.Generator().manual_seed(3)
    ramp = torch.linspace(0, 1, 24, dtype=torch.float64)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    smooth = torch.stack([yy * xx, (xx - 0.5) ** 2 + 0.3 * yy, 0.5 + 0.4 * torch.sin(3 * yy)])
    known = (smooth + 0.02 * torch.rand(3, 24, 24, generator=g, dtype=torch.float64))[None]
    holes = torch.zeros(1, 24, 24, dtype=torch.bool)
    holes[0, 5:14, 6:12] = True
    holes[0, 17:, 15:20] = True  # a hole at the image's edge, where the stencils differ
    ours = biharmonic_fill(known, holes)
    theirs = restoration.inpaint_biharmonic(known[0].permute(1, 2, 0).numpy(), holes[0].numpy(), channel_axis=-1)
    theirs = torch.from_numpy(theirs).permute(2, 0, 1)[None]
    inside = holes[:, None].expand_as(known)
    assert torch.equal(ours[~inside], known[~inside])
    assert (ours - theirs)[inside].abs().mean() < 0.01 and (ours - theirs)[inside].abs().max() < 0.1
    interior = torch.zeros_like(inside)
    interior[..., 5:14, 6:12] = True  # away from the edge the two solve the same equations
    torch.testing.assert_close(ours[interior], theirs[interior], rtol=0, atol=1e-6)


def test_biharmonic_fill_carries_slopes_a_harmonic_fill_flattens():
    yy, xx = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    bowl = ((xx - 9.5) ** 2 + (yy - 9.5) ** 2)[None, None].double() / 200  # Laplacian constant, bilaplacian 0
    holes = torch.zeros(1, 20, 20, dtype=torch.bool)
    holes[0, 6:14, 6:14] = True
    torch.testing.assert_close(biharmonic_fill(bowl, holes), bowl, rtol=0, atol=1e-9)
    harmonic = poisson_blend(torch.zeros_like(bowl), bowl, holes)  # the harmonic fill of the known pixels
    assert (harmonic - bowl)[holes[:, None]].abs().max() > 0.05  # a harmonic fill cannot dip into the bowl
    assert torch.equal(biharmonic_fill(bowl, torch.zeros_like(holes)), bowl)


def test_the_smooth_prior_follows_the_confidence():
    decoded, known, holes = random_case(4, size=16)  # 16 x 16 pixels: 4 x 4 tokens of 4 x 4
    blended = poisson_blend(decoded, known, holes)
    smooth = biharmonic_fill(known, holes)
    inside = holes[:, None].expand_as(known)
    sure, unsure = torch.full((3, 4, 4), PRIOR_TAU), torch.zeros(3, 4, 4)  # p >= tau keeps the decoded fill alone
    assert torch.equal(smooth_prior(blended, known, holes, sure), blended)
    certain = confidence_weights(torch.ones(3, 4, 4), 16)  # p = 1 keeps (1 / tau) ** gamma of it
    assert torch.allclose(certain, torch.tensor((1 / PRIOR_TAU) ** PRIOR_GAMMA))
    assert torch.allclose(confidence_weights(torch.full((1, 4, 4), 0.3), 16), torch.tensor(0.2))  # (0.3 / 1.5) ** 1
    torch.testing.assert_close(
        smooth_prior(blended, known, holes, unsure), torch.where(inside, smooth.clamp(0, 1), known)
    )
    half = torch.full((3, 4, 4), 0.5)
    w = confidence_weights(half, 16)
    assert w.shape == (3, 1, 16, 16) and torch.allclose(w, w[0, 0, 0, 0]) and 0 < float(w[0, 0, 0, 0]) < 1
    mixed = smooth_prior(blended, known, holes, half)
    assert torch.equal(mixed[~inside], known[~inside])
    between = (mixed - blended).abs() <= (smooth.clamp(0, 1) - blended).abs() + 1e-6
    assert between[inside].all()
