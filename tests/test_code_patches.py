"""Code patches, the mean pixels under each VQGAN code: statistics from images and tokens, from the VQGAN's decoder,
and their trip through `maskgit tokenize` (token cache) -> `maskgit train` (transformer file) -> `maskgit inpaint`."""

from __future__ import annotations

import json

import torch

from maskgit_cli.decoding.guidance import code_patches_for
from maskgit_cli.vqgan.code_patches import PatchStats, read_code_patches, to_patches, vqgan_code_patches
from maskgit_cli.weights import load_model, model_fingerprint, read_tensors, save_model


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
    assert "was trained on the tokens of VQGAN" in r.stderr and "--any-vqgan" in r.stderr
    assert not (tmp_path / "bad").exists()
    # another VQGAN is refused with guidance off too (its tokens mean something else), unless asked for
    r = cli(*args, "--vqgan", other, "-o", tmp_path / "off", "--pixel-guidance", "0", "--grids", "0")
    assert r.exit_code == 1 and "--any-vqgan" in r.stderr and not (tmp_path / "off").exists()
    r = cli(*args, "--vqgan", other, "-o", tmp_path / "off", "--pixel-guidance", "0", "--grids", "0", "--any-vqgan")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "off" / "report.json").read_text())["settings"]["code_patches"] is None
    # with guidance on, the stored patches belong to the other VQGAN: this one's are decoded (and cached)
    r = cli(*args, "--vqgan", other, "-o", tmp_path / "any", "--grids", "0", "--any-vqgan")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "any" / "report.json").read_text())["settings"]["code_patches"] == "VQGAN decode"


def test_default_weights_carry_code_patches_of_the_default_vqgan():
    from pathlib import Path

    weights = Path(__file__).resolve().parents[1] / "weights"
    patches = read_code_patches(weights / "maskgit-emoji64.safetensors")
    assert patches is not None and patches.patches.shape == (1024, 3, 4, 4)
    assert 0 <= patches.patches.min() and patches.patches.max() <= 1
    vqgan = load_model(weights / "vqgan-emoji64.safetensors", "vqgan")
    assert code_patches_for(vqgan, patches) is patches  # the recorded VQGAN is the shipped one
