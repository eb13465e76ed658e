"""Token caches and `maskgit tokenize`: exact tokens, flips, bad input, no partial output, old caches."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.data.images import load_folder
from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.tokens import load_token_cache, tokenize_folder
from maskgit_cli.weights import model_fingerprint, save_tensors


def test_tokens_match_encode_and_metadata(tmp_path, image_dir, tiny_vqgan, tiny_vqgan_file, cli):
    out = tmp_path / "train.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--batch-size", "4")
    assert r.exit_code == 0, r.output
    assert "6 token grids 16x16 from 6 images" in r.stdout
    cache = load_token_cache(out)
    images, files = load_folder(image_dir, 64)
    assert torch.equal(cache.tokens, tiny_vqgan.encode(images))
    assert cache.files == [f.name for f in files] == sorted(cache.files)
    assert cache.vqgan_sha256 == model_fingerprint(tiny_vqgan)
    assert cache.image_size == 64 and cache.num_codebook_vectors == 64 and not cache.flip
    assert cache.vqgan_config["latent_dim"] == 32


def test_flip_appends_flipped_tokens(tmp_path, image_dir, tiny_vqgan):
    s = tokenize_folder(image_dir, tiny_vqgan, tmp_path / "f.tokens", flip=True, num_workers=0)
    assert s.rows == 12 and s.images == 6
    cache = load_token_cache(tmp_path / "f.tokens")
    images, _ = load_folder(image_dir, 64)
    assert cache.flip
    assert torch.equal(cache.tokens[6:], tiny_vqgan.encode(images.flip(-1)))


def test_deterministic(tmp_path, image_dir, tiny_vqgan):
    tokenize_folder(image_dir, tiny_vqgan, tmp_path / "a.tokens", batch_size=4, num_workers=0)
    tokenize_folder(image_dir, tiny_vqgan, tmp_path / "b.tokens", batch_size=5, num_workers=2)
    assert torch.equal(load_token_cache(tmp_path / "a.tokens").tokens, load_token_cache(tmp_path / "b.tokens").tokens)


def test_other_vqgan_fingerprint_is_named(tmp_path, image_dir, tiny_vqgan):
    tokenize_folder(image_dir, tiny_vqgan, tmp_path / "a.tokens", num_workers=0)
    with pytest.raises(MaskgitError, match="tokens were made by VQGAN [0-9a-f]{12}, but this VQGAN is deadbeef"):
        load_token_cache(tmp_path / "a.tokens", expect_vqgan_sha256="deadbeef" * 8)


def test_corrupt_image_names_the_file_and_writes_nothing(tmp_path, image_dir, tiny_vqgan_file, cli):
    (image_dir / "image_003.png").write_bytes(b"not a png")
    out = tmp_path / "t.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--workers", "0")
    assert r.exit_code == 1
    assert "image_003.png: not a readable image" in r.stderr and r.stderr.startswith("Error: ")
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == list(tmp_path.glob(".*tmp")) == []


def test_skip_invalid_counts_skipped(tmp_path, image_dir, tiny_vqgan_file, cli):
    (image_dir / "image_003.png").write_bytes(b"not a png")
    out = tmp_path / "t.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "5 token grids" in r.stdout and "1 skipped" in r.stdout and "image_003.png" in r.stderr
    cache = load_token_cache(out)
    assert "image_003.png" not in cache.files and len(cache.files) == 5


def test_wrong_size_names_file_and_size_and_resize_fixes_it(tmp_path, image_dir, tiny_vqgan_file, cli):
    Image.new("RGB", (48, 40), (10, 20, 30)).save(image_dir / "image_009.png")
    out = tmp_path / "t.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--workers", "0")
    assert r.exit_code == 1 and "image_009.png: image is 48x40, expected 64x64" in r.stderr
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--resize")
    assert r.exit_code == 0 and load_token_cache(out).tokens.shape == (7, 16, 16)


def test_other_modes_are_converted_to_rgb(tmp_path, tiny_vqgan, make_images):
    folder = tmp_path / "modes"
    make_images(folder, 1)
    rgb = Image.open(folder / "image_000.png")
    rgb.convert("L").save(folder / "image_001.png")
    rgb.convert("P").save(folder / "image_002.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)  # fully transparent -> white
    rgba.save(folder / "image_003.png")
    s = tokenize_folder(folder, tiny_vqgan, tmp_path / "m.tokens", num_workers=0)
    assert s.images == 4
    white = tiny_vqgan.encode(torch.ones(1, 3, 64, 64))
    assert torch.equal(load_token_cache(tmp_path / "m.tokens").tokens[3], white[0])


def test_empty_and_missing_folders(tmp_path, tiny_vqgan_file, cli):
    (tmp_path / "empty").mkdir()
    r = cli("tokenize", tmp_path / "empty", "--vqgan", tiny_vqgan_file, "-o", tmp_path / "t.tokens")
    assert r.exit_code == 1 and "empty: contains no images" in r.stderr
    r = cli("tokenize", tmp_path / "nope", "--vqgan", tiny_vqgan_file, "-o", tmp_path / "t.tokens")
    assert r.exit_code == 1 and "nope: no such folder" in r.stderr


def test_missing_or_wrong_kind_weights(tmp_path, image_dir, cli):
    r = cli("tokenize", image_dir, "--vqgan", tmp_path / "nope.safetensors", "-o", tmp_path / "t.tokens")
    assert r.exit_code == 1 and "nope.safetensors: no such file" in r.stderr
    save_tensors(tmp_path / "tok.tokens", {"tokens": torch.zeros(1, 16, 16, dtype=torch.int16)}, {"kind": "tokens"})
    r = cli("tokenize", image_dir, "--vqgan", tmp_path / "tok.tokens", "-o", tmp_path / "t.tokens")
    assert r.exit_code == 1 and "not a maskgit model file (kind 'tokens')" in r.stderr


def test_token_file_is_not_a_weights_file_and_vice_versa(tmp_path, tiny_vqgan_file):
    with pytest.raises(MaskgitError, match="not a token cache"):
        load_token_cache(tiny_vqgan_file)


def test_interrupted_run_leaves_no_output(tmp_path, image_dir, tiny_vqgan, monkeypatch):
    calls = {"n": 0}
    real = tiny_vqgan.encode

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(tiny_vqgan, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        tokenize_folder(image_dir, tiny_vqgan, tmp_path / "t.tokens", batch_size=2, num_workers=0)
    assert not (tmp_path / "t.tokens").exists()
    assert np.all([p.suffix != ".tmp" for p in tmp_path.iterdir()])


def test_old_token_caches_still_load(tmp_path):
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
