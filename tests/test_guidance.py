"""Known-pixel guidance: the bias formula, which code patches a VQGAN accepts (and the fallback to decoding them
from the VQGAN), and what guidance does to decoding."""

from __future__ import annotations

import json

import pytest
import torch

from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens
from maskgit_cli.decoding.guidance import code_patches_for, known_pixel_bias
from maskgit_cli.decoding.inpaint import InpaintSettings, decode_inputs, encode_inputs
from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
from maskgit_cli.vqgan.code_patches import CodePatches, read_code_patches, to_patches
from maskgit_cli.weights import model_fingerprint


def brute_force_bias(images, holes, patches, strength):
    B, C, H, W = images.shape
    V, _, p, _ = patches.shape
    h, w = H // p, W // p
    out = torch.zeros(B, h * w, V, dtype=torch.float64)
    for b in range(B):
        for i in range(h):
            for j in range(w):
                x = images[b, :, i * p : (i + 1) * p, j * p : (j + 1) * p].double()
                known = ~holes[b, i * p : (i + 1) * p, j * p : (j + 1) * p]
                for k in range(V):
                    d = ((x - patches[k].double()) ** 2).sum(0)  # (p,p): summed over channels
                    out[b, i * w + j, k] = -strength * d[known].sum()
    return out


def test_bias_matches_the_formula():
    torch.manual_seed(0)
    images, holes, patches = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8) < 0.4, torch.rand(5, 3, 4, 4)
    holes[0, :4, :4] = True  # one token all holes
    holes[1, 4:, 4:] = False  # one token all known
    bias = known_pixel_bias(images, holes, patches, 7.5)
    assert bias.shape == (2, 4, 5) and bias.dtype == torch.float32
    torch.testing.assert_close(bias.double(), brute_force_bias(images, holes, patches, 7.5), rtol=1e-6, atol=1e-4)
    assert torch.equal(bias[0, 0], torch.zeros(5))  # no known pixel: no opinion
    assert (bias <= 0).all()


def test_bias_prefers_the_code_that_looks_like_the_known_pixels():
    torch.manual_seed(1)
    patches = torch.rand(6, 3, 4, 4)
    images = torch.zeros(1, 3, 8, 8)
    for t, k in enumerate([3, 0, 5, 2]):  # token t shows exactly code k's patch
        i, j = divmod(t, 2)
        images[0, :, i * 4 : i * 4 + 4, j * 4 : j * 4 + 4] = patches[k]
    holes = torch.zeros(1, 8, 8, dtype=torch.bool)
    holes[0, :, :2] = True  # the left two columns of pixels are holes: tokens 0 and 2 are half known
    assert known_pixel_bias(images, holes, patches, 50.0)[0].argmax(-1).tolist() == [3, 0, 5, 2]


def test_bias_does_not_depend_on_the_batch():
    torch.manual_seed(2)
    images, holes, patches = torch.rand(5, 3, 16, 16), torch.rand(5, 16, 16) < 0.3, torch.rand(64, 3, 4, 4)
    batch = known_pixel_bias(images, holes, patches, 50.0)
    for b in range(5):
        assert torch.equal(batch[b], known_pixel_bias(images[b : b + 1], holes[b : b + 1], patches, 50.0)[0])


def test_code_patches_for_checks_the_vqgan(tiny_vqgan):
    cfg = tiny_vqgan.config
    p = cfg.img_resolution // cfg.latent_resolution
    good = CodePatches(torch.rand(cfg.num_codebook_vectors, 3, p, p), "training images", model_fingerprint(tiny_vqgan))
    assert code_patches_for(tiny_vqgan, good) is good
    with pytest.raises(MaskgitError, match="code patches were made with VQGAN 0123456789ab, but this VQGAN is"):
        code_patches_for(tiny_vqgan, CodePatches(good.patches, "training images", "0123456789ab" + "0" * 52))
    with pytest.raises(MaskgitError, match="code patches have shape"):
        code_patches_for(tiny_vqgan, CodePatches(torch.rand(7, 3, p, p), "training images"))


def test_strong_guidance_decides_tokens_whose_pixels_are_known():
    """Tokens regenerated only because they border a hole (--dilate) show all their pixels: with a very strong
    guidance they take the code whose patch is nearest to those pixels, whatever the transformer says."""
    torch.manual_seed(4)
    model = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=32, num_image_tokens=16)).eval()
    patches = torch.rand(32, 3, 4, 4)
    images = torch.rand(3, 3, 16, 16)
    holes = torch.zeros(3, 16, 16, dtype=torch.bool)
    holes[:, 5:7, 5:11] = True  # touches tokens (1,1), (1,2); dilate 1 adds their ring
    bias = known_pixel_bias(images, holes, patches, 1e5)
    tokens = torch.randint(0, 32, (3, 16))
    tmask = torch.zeros(3, 4, 4, dtype=torch.bool)
    tmask[:, 0:3, 0:4] = True
    out = decode_tokens(
        model, tokens, tmask.flatten(1), DecodeSettings(total_iter=4), model.config.mask_token_id, logit_bias=bias
    ).tokens
    fully_known = ~to_patches(holes[:, None].float(), 4).bool().any(-1)  # (B,L)
    regenerated_known = tmask.flatten(1) & fully_known
    assert regenerated_known.sum() == 3 * 10
    assert torch.equal(out[regenerated_known], bias.argmax(-1)[regenerated_known])
    assert torch.equal(out[~tmask.flatten(1)], tokens[~tmask.flatten(1)])  # known tokens never change


def test_guidance_off_is_the_plain_decoder(tiny_vqgan):
    torch.manual_seed(5)
    cfg = tiny_vqgan.config
    model = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=cfg.num_codebook_vectors)).eval()
    images, holes = torch.rand(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool)
    holes[:, 10:30, 20:50] = True
    off = InpaintSettings(pixel_guidance=0, precision="fp32", blend="none", fill="sharp", draws=1)  # fp32, one draw
    enc = encode_inputs(tiny_vqgan, images, holes, off)
    plain = decode_tokens(model, enc.tokens, enc.token_masks.flatten(1), off.decode, model.config.mask_token_id)
    res = decode_inputs(model, tiny_vqgan, images, holes, enc, off, record_rows=(0,))
    expected = tiny_vqgan.decode(plain.tokens.view(-1, 16, 16))
    torch.testing.assert_close(res.images[0][holes[0].expand(3, -1, -1)], expected[0][holes[0].expand(3, -1, -1)])
    with pytest.raises(ValueError, match="code patches"):
        decode_inputs(model, tiny_vqgan, images, holes, enc, InpaintSettings())
    with pytest.raises(MaskgitError, match="--pixel-guidance -1"):
        InpaintSettings(pixel_guidance=-1)


def test_files_without_patches_fall_back_to_the_vqgan(cli, tiny_transformer_file, tiny_vqgan_file, image_dir, tmp_path):
    path = tiny_transformer_file
    assert read_code_patches(path) is None
    masks = tmp_path / "masks"
    assert cli("masks", image_dir, "-o", masks, "--kind", "box").exit_code == 0
    r = cli(
        "inpaint", "--images", image_dir, "--masks", masks, "--transformer", path, "--vqgan", tiny_vqgan_file,
        "-o", tmp_path / "out", "--grids", "1", "--device", "cpu",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "report.json").read_text())["settings"]["code_patches"] == "VQGAN decode"
    assert "has no code patches, decoding them from the VQGAN" in r.stderr
    r = cli("inpaint", "--images", image_dir, "--masks", masks, "--transformer", path, "--vqgan", tiny_vqgan_file,
            "-o", tmp_path / "neg", "--pixel-guidance", "-1")  # fmt: skip
    assert r.exit_code == 2 and "--pixel-guidance" in r.stderr


def test_an_absurd_strength_keeps_the_bias_finite_and_ordered():
    """--pixel-guidance 1e308 (issue 28, item 9): the bias would be -inf for every code, leaving nothing to draw; it
    stays finite and keeps the codes' order by distance."""
    torch.manual_seed(1)
    patches, images = torch.rand(6, 3, 4, 4), torch.rand(2, 3, 8, 8)
    holes = torch.rand(2, 8, 8) < 0.3
    holes[0, :4, :4] = True  # one token all holes: no opinion, whatever the strength
    bias = known_pixel_bias(images, holes, patches, 1e308)
    assert torch.isfinite(bias).all() and torch.equal(bias[0, 0], torch.zeros(6))
    distance = -known_pixel_bias(images, holes, patches, 1.0)
    assert torch.equal(bias.argsort(dim=-1, descending=True, stable=True), distance.argsort(dim=-1, stable=True))
