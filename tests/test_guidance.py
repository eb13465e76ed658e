"""Known-pixel guidance: the bias formula, code patches from token caches and the VQGAN, their trip through
`maskgit tokenize` -> `maskgit train` -> `maskgit inpaint`, and what guidance does to decoding."""

from __future__ import annotations

import json

import pytest
import torch

from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens
from maskgit_cli.decoding.guidance import code_patches_for, known_pixel_bias
from maskgit_cli.decoding.inpaint import InpaintSettings, decode_inputs, encode_inputs
from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
from maskgit_cli.vqgan.code_patches import CodePatches, PatchStats, read_code_patches, to_patches, vqgan_code_patches
from maskgit_cli.weights import load_model, model_fingerprint, read_tensors, save_model, save_tensors


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


def test_patch_stats_average_the_pixels_under_each_code():
    torch.manual_seed(3)
    images = torch.rand(3, 3, 8, 8)
    tokens = torch.tensor([[[0, 1], [1, 1]], [[2, 0], [1, 2]], [[0, 0], [0, 1]]])
    stats = PatchStats(num_codes=4, channels=3, patch=4)
    stats.add(images[:2], tokens[:2])
    stats.add(images[2:], tokens[2:])
    assert stats.counts.tolist() == [5, 5, 2, 0]
    patches = to_patches(images, 4).reshape(12, 3, 4, 4)
    flat = tokens.reshape(-1)
    fallback = torch.full((4, 3, 4, 4), 0.25)
    means = stats.means(fallback)
    for k in range(3):
        torch.testing.assert_close(means[k], patches[flat == k].mean(0))
    assert torch.equal(means[3], fallback[3])  # never seen: the fallback
    assert torch.equal(stats.means()[3], torch.full((3, 4, 4), 0.5))


def test_vqgan_code_patches(tiny_vqgan):
    patches = vqgan_code_patches(tiny_vqgan, batch_size=24)
    cfg = tiny_vqgan.config
    p = cfg.img_resolution // cfg.latent_resolution
    assert patches.shape == (cfg.num_codebook_vectors, 3, p, p)
    k = 5
    grid = torch.full((1, cfg.latent_resolution, cfg.latent_resolution), k)
    c = cfg.latent_resolution // 2 * p
    expected = tiny_vqgan.decode(grid)[0, :, c : c + p, c : c + p].clamp(0, 1)
    torch.testing.assert_close(patches[k], expected, rtol=1e-5, atol=1e-5)


def test_code_patches_for_checks_the_vqgan(tiny_vqgan):
    cfg = tiny_vqgan.config
    p = cfg.img_resolution // cfg.latent_resolution
    own = code_patches_for(tiny_vqgan)
    assert own.source == "VQGAN decode" and own.vqgan_sha256 is None
    good = CodePatches(torch.rand(cfg.num_codebook_vectors, 3, p, p), "training images", model_fingerprint(tiny_vqgan))
    assert code_patches_for(tiny_vqgan, good) is good
    with pytest.raises(MaskgitError, match="trained on the tokens of VQGAN 0123456789ab, but this VQGAN is"):
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
    out = decode_tokens(model, tokens, tmask.flatten(1), DecodeSettings(total_iter=4), logit_bias=bias).tokens
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
    off = InpaintSettings(pixel_guidance=0)
    enc = encode_inputs(tiny_vqgan, images, holes, off)
    plain = decode_tokens(model, enc.tokens, enc.token_masks.flatten(1), off.decode)
    res = decode_inputs(model, tiny_vqgan, images, holes, enc, off, record_rows=(0,))
    expected = tiny_vqgan.decode(plain.tokens.view(-1, 16, 16))
    torch.testing.assert_close(res.images[0][holes[0].expand(3, -1, -1)], expected[0][holes[0].expand(3, -1, -1)])
    with pytest.raises(ValueError, match="code patches"):
        decode_inputs(model, tiny_vqgan, images, holes, enc, InpaintSettings())
    with pytest.raises(MaskgitError, match="--pixel-guidance -1"):
        InpaintSettings(pixel_guidance=-1)


def test_tokenize_train_inpaint_carry_the_patches(cli, image_dir, tiny_vqgan, tiny_vqgan_file, tmp_path):
    cache = tmp_path / "train.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", cache, "--flip", "--device", "cpu")
    assert r.exit_code == 0, r.output
    tensors = read_tensors(cache)
    counts, sums = tensors["code_patch_counts"], tensors["code_patch_sums"]
    tokens = tensors["tokens"].long()
    assert counts.sum() == tokens.numel() == 12 * 256  # 6 images and their flips
    assert torch.equal(counts, torch.bincount(tokens.flatten(), minlength=len(counts)))
    k = int(tokens[0, 0, 0])  # the first token of the first image: its patch is in the sum of code k
    assert sums.shape == (tiny_vqgan.config.num_codebook_vectors, 48) and sums[k].abs().sum() > 0

    run = tmp_path / "run"
    r = cli("train", cache, "-o", run, "--preset", "tiny", "--max-steps", "2", "--batch-size", "4", "--device", "cpu")
    assert r.exit_code == 0, r.output
    weights = run / "last.safetensors"
    patches = read_code_patches(weights)
    assert patches is not None and patches.source == "training images"
    assert patches.vqgan_sha256 == model_fingerprint(tiny_vqgan)
    assert patches.patches.shape == (tiny_vqgan.config.num_codebook_vectors, 3, 4, 4)
    torch.testing.assert_close(patches.patches[k].flatten(), (sums[k] / counts[k]).float())
    load_model(weights, "transformer")  # strict loading skips the aux tensor

    # inpaint uses them (report.json says so) and refuses another VQGAN
    masks = tmp_path / "masks"
    assert cli("masks", image_dir, "-o", masks, "--kind", "stroke").exit_code == 0
    args = ["inpaint", "--images", image_dir, "--masks", masks, "--transformer", weights, "--device", "cpu"]
    r = cli(*args, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "out", "--grids", "0")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["code_patches"] == "training images"
    assert report["settings"]["pixel_guidance"] == 50.0

    other = tmp_path / "other-vqgan.safetensors"
    with torch.no_grad():
        tiny_vqgan.codebook.embedding.weight.add_(1.0)
    save_model(other, tiny_vqgan, "vqgan")
    r = cli(*args, "--vqgan", other, "-o", tmp_path / "bad")
    assert r.exit_code == 1
    assert "was trained on the tokens of VQGAN" in r.stderr and "--pixel-guidance 0" in r.stderr
    assert not (tmp_path / "bad" / "images").exists() or not any((tmp_path / "bad" / "images").iterdir())
    r = cli(*args, "--vqgan", other, "-o", tmp_path / "off", "--pixel-guidance", "0", "--grids", "0")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "off" / "report.json").read_text())["settings"]["code_patches"] is None


def test_files_without_patches_fall_back_to_the_vqgan(cli, tiny_vqgan_file, image_dir, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "t.safetensors"
    save_model(path, MaskGITTransformer(get_preset("tiny", num_codebook_vectors=64)), "transformer")
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


def test_old_token_caches_still_load(tmp_path):
    from maskgit_cli.vqgan.tokens import load_token_cache

    path = tmp_path / "old.tokens"
    meta = {
        "kind": "tokens", "files": json.dumps(["a.png"]), "vqgan_sha256": "0" * 64, "vqgan_config": "{}",
        "image_size": "64", "num_codebook_vectors": "64", "flip": "false",
    }  # fmt: skip
    save_tensors(path, {"tokens": torch.zeros(1, 16, 16, dtype=torch.int16)}, meta)
    assert load_token_cache(path).patch_stats is None
    save_tensors(path, {"tokens": torch.zeros(1, 16, 16, dtype=torch.int16), "code_patch_sums": torch.zeros(64, 48)},
                 {**meta, "patch_size": "4"})  # fmt: skip
    with pytest.raises(MaskgitError, match="incomplete or invalid"):
        load_token_cache(path)


def test_default_weights_carry_code_patches_of_the_default_vqgan():
    from pathlib import Path

    weights = Path(__file__).resolve().parents[1] / "weights"
    patches = read_code_patches(weights / "maskgit-emoji64.safetensors")
    assert patches is not None and patches.patches.shape == (1024, 3, 4, 4)
    assert 0 <= patches.patches.min() and patches.patches.max() <= 1
    vqgan = load_model(weights / "vqgan-emoji64.safetensors", "vqgan")
    assert code_patches_for(vqgan, patches) is patches  # the recorded VQGAN is the shipped one
