"""Poisson blending (`--blend poisson`): the exact solution of the discrete equations, known pixels untouched, batch
independence, and its place in inpainting (composite only; the lab's settings turn it off)."""

import pytest
import torch

from maskgit_cli.decoding.blend import poisson_blend
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
    assert torch.equal(finish(decoded, known, holes, InpaintSettings()), poisson_blend(decoded, known, holes))
    assert InpaintSettings.from_options(lab=True).blend == LAB_SETTINGS["blend"] == "none"
    with pytest.raises(MaskgitError, match="--blend seamless: expected one of poisson, none"):
        InpaintSettings(blend="seamless")
