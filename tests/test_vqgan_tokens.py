"""Token caches and `maskgit tokenize`: exact tokens, flips, bad input, no partial output, old caches."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.data.images import load_folder
from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.tokens import load_token_cache, tokenize_folder
from maskgit_cli.weights import model_fingerprint, read_metadata, save_tensors


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


def _write_cache(path, tokens=None, files=None, flip=False, config=None, codes=64, stats=None):
    """A token cache like tokenize's (tiny VQGAN: 64 codes, 16x16 grids of 64x64 images), with what is given."""
    from maskgit_cli.vqgan.model import VQGAN_PRESETS
    from maskgit_cli.vqgan.tokens import save_token_cache
    from maskgit_cli.weights import config_to_json

    tokens = torch.randint(0, 64, (4, 16, 16), generator=torch.Generator().manual_seed(0)) if tokens is None else tokens
    files = [f"image_{i:03d}.png" for i in range(len(tokens) // (2 if flip else 1))] if files is None else files
    config = config_to_json(VQGAN_PRESETS["tiny"]) if config is None else config
    save_token_cache(path, tokens, files, "0" * 64, config, 64, codes, flip, stats)
    return path


def _good_tokens():
    return torch.randint(0, 64, (4, 16, 16), generator=torch.Generator().manual_seed(0))


def _with(index, value):
    tokens = _good_tokens()
    tokens[index] = value
    return tokens


BAD_CACHES = {
    "id_too_large": (dict(tokens=_with((1, 2, 3), 64)), r"1 token ids outside 0\.\.63 \(min 0, max 64; 64 codes\)"),
    "mask_id": (dict(tokens=_with((0, 0, 0), 64)), r"outside 0\.\.63"),
    "negative_id": (dict(tokens=_with((3, 15, 15), -1)), r"outside 0\.\.63 \(min -1"),
    "rows_vs_files": (dict(files=["a.png", "b.png", "c.png"]), r"holds 4 token grids but names 3 files \(3 expected\)"),
    "rows_vs_flip": (dict(files=["a.png", "b.png", "c.png", "d.png"], flip=True), r"names 4 files x2 for the flips"),
    "grid_vs_vqgan": (dict(tokens=torch.zeros(4, 8, 8, dtype=torch.long)), r"grids are 8x8 but its VQGAN's latent"),
    "bad_vqgan_config": (dict(config='{"enc_channels": 5}'), r"vqgan_config.*enc_channels must be a list"),
    "no_codes": (dict(codes=0), r"num_codebook_vectors is 0"),
}


@pytest.mark.parametrize("name", list(BAD_CACHES))
def test_bad_token_caches_are_refused_when_loaded(tmp_path, name):
    kwargs, pattern = BAD_CACHES[name]
    path = _write_cache(tmp_path / f"{name}.tokens", **kwargs)
    with pytest.raises(MaskgitError, match=pattern) as e:
        load_token_cache(path)
    assert str(e.value).startswith(f"{path}: token cache ") and "\n" not in str(e.value)


def test_non_integer_tokens_are_refused(tmp_path):
    path = _write_cache(tmp_path / "float.tokens")
    meta = dict(read_metadata(path))
    save_tensors(path, {"tokens": torch.zeros(4, 16, 16)}, meta)
    with pytest.raises(MaskgitError, match=r"float\.tokens: token cache's 'tokens' tensor is torch\.float32"):
        load_token_cache(path)
    load_token_cache(_write_cache(tmp_path / "good.tokens"))  # the same cache with integer ids loads


def test_train_on_a_bad_cache_fails_before_creating_the_run(tmp_path, cli):
    bad = _write_cache(tmp_path / "bad.tokens", tokens=_with((0, 0, 0), 64))
    run = tmp_path / "runs" / "x"
    r = cli("train", bad, "-o", run, "--device", "cpu", "--preset", "tiny", "--max-steps", "1")
    assert r.exit_code == 1 and "Traceback" not in r.output and r.stderr.startswith("Error: ")
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.tokens: token cache holds 1 token ids" in r.stderr
    assert not run.exists()


def _one_line_error(r, *parts):
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    for part in parts:
        assert part in r.stderr, r.stderr


def test_tokenize_refuses_to_replace_an_existing_cache_without_overwrite(tmp_path, image_dir, tiny_vqgan_file, cli):
    out = tmp_path / "t.tokens"
    out.write_bytes(b"previous")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not weights")  # the output is checked before the VQGAN is even read
    r = cli("tokenize", image_dir, "--vqgan", garbage, "-o", out, "--device", "cpu")
    _one_line_error(r, "t.tokens: already exists; pass --overwrite to replace it")
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu")
    _one_line_error(r, "--overwrite")
    assert out.read_bytes() == b"previous"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--overwrite")
    _one_line_error(r, "t.tokens: not a token cache; --overwrite replaces only a cache `maskgit tokenize` wrote")
    assert out.read_bytes() == b"previous"  # nothing deleted that the tool did not make
    out.unlink()
    assert cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu").exit_code == 0
    before = out.read_bytes()
    (image_dir / "image_005.png").unlink()
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--overwrite")
    assert r.exit_code == 0, r.output
    assert len(load_token_cache(out).tokens) == 5 and out.read_bytes() != before


def test_tokenize_never_overwrites_an_input(tmp_path, image_dir, tiny_vqgan_file, cli):
    weights, image = tiny_vqgan_file.read_bytes(), (image_dir / "image_002.png").read_bytes()
    for overwrite in ((), ("--overwrite",)):
        r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", tiny_vqgan_file, *overwrite)
        _one_line_error(r, "is the --vqgan file, an input")
        r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", image_dir / "image_002.png", *overwrite)
        _one_line_error(r, "is the image image_002.png of", "an input")
    assert tiny_vqgan_file.read_bytes() == weights and (image_dir / "image_002.png").read_bytes() == image
    with pytest.raises(MaskgitError, match="is the image"):
        tokenize_folder(image_dir, tiny_vqgan_file, image_dir / "image_000.png", overwrite=True, num_workers=0)


def test_tokenize_output_that_is_a_folder_is_one_line(tmp_path, image_dir, tiny_vqgan_file, cli):
    (tmp_path / "out").mkdir()
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "out", "--overwrite")
    _one_line_error(r, "out: is a folder; give the token cache's file name")
    assert list((tmp_path / "out").iterdir()) == []


def _write_bomb(path):
    import struct
    import zlib

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_decompression_bomb_fails_one_line_or_is_skipped(tmp_path, image_dir, tiny_vqgan_file, cli):
    _write_bomb(image_dir / "image_004.png")
    out = tmp_path / "t.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--workers", "0")
    _one_line_error(r, "image_004.png: its header claims 100000x100000 pixels")
    assert not out.exists()
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert "5 token grids" in r.stdout and "1 skipped" in r.stdout and "image_004.png" in r.stderr
    assert "image_004.png" not in load_token_cache(out).files


def test_masked_copies_are_what_inpainting_encodes(tmp_path, image_dir, tiny_vqgan, tiny_vqgan_file, cli):
    from maskgit_cli.data.inputs import holes_gray
    from maskgit_cli.data.masks import token_mask_for
    from maskgit_cli.vqgan.tokens import context_fidelity, masked_copy_masks

    out = tmp_path / "c.tokens"
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--flip",
            "--masked-copies", "2", "--mask-seed", "3", "--batch-size", "4")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "12 token grids 16x16 + 2 masked copies each from 6 images" in r.stdout
    cache = load_token_cache(out)
    assert cache.masked_copies == 2 and cache.masked_tokens.shape == (12, 2, 16, 16)
    images, _ = load_folder(image_dir, 64)
    for view, rows in ((0, slice(0, 6)), (1, slice(6, 12))):
        holes = masked_copy_masks(list(range(6)), view, 2, 3, 64)
        assert holes.any() and not torch.equal(holes[:, 0], holes[:, 1])  # every copy has its own holes
        x = images.flip(-1) if view else images
        for k in range(2):
            want = tiny_vqgan.encode(holes_gray(x, holes[:, k]))  # exactly the holes inpainting would fill
            assert torch.equal(cache.masked_tokens[rows, k], want)
            assert torch.equal(cache.masked_holes[rows, k], token_mask_for(holes[:, k], 16))
    fidelity = context_fidelity(cache.tokens, cache.masked_tokens, cache.masked_holes)
    assert 0 < fidelity < 1 and cache.context_fidelity == pytest.approx(fidelity, abs=1e-6)
    assert f"context fidelity: {fidelity:.1%}" in r.stdout
    # a pure function of (seed, image, view, copy): batching and workers change nothing
    tokenize_folder(image_dir, tiny_vqgan, tmp_path / "d.tokens", batch_size=5, num_workers=0, flip=True,
                    masked_copies=2, mask_seed=3)  # fmt: skip
    assert torch.equal(load_token_cache(tmp_path / "d.tokens").masked_tokens, cache.masked_tokens)
    # identical copies give fidelity 1
    same = cache.tokens[:, None].expand(-1, 2, -1, -1)
    assert context_fidelity(cache.tokens, same, cache.masked_holes) == 1.0


def test_masked_copies_that_do_not_fit_are_refused(tmp_path):
    tokens = torch.zeros(4, 16, 16, dtype=torch.int16)
    meta = {"kind": "tokens", "files": json.dumps([f"{i}.png" for i in range(4)]), "vqgan_sha256": "a" * 64,
            "vqgan_config": "{}", "image_size": "64", "num_codebook_vectors": "64", "flip": "false"}  # fmt: skip
    save_tensors(tmp_path / "bad.tokens", {"tokens": tokens, "masked_tokens": torch.zeros(3, 2, 16, 16,
                 dtype=torch.int16), "masked_holes": torch.zeros(3, 2, 16, 16, dtype=torch.uint8)}, meta)  # fmt: skip
    with pytest.raises(MaskgitError, match=r"masked copies \(3, 2, 16, 16\) / \(3, 2, 16, 16\) do not fit"):
        load_token_cache(tmp_path / "bad.tokens")


def test_tokenize_into_the_current_folder_is_one_line(tmp_path, image_dir, tiny_vqgan_file, cli, monkeypatch):
    """Issue 28 item 10: `-o .` names the folder and what to give instead."""
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", ".", "--overwrite")
    _one_line_error(r, "-o .: is a folder; give the token cache's file name, e.g. train.tokens")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("error", ["oserror", "safetensors"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, image_dir, tiny_vqgan_file, cli, monkeypatch, error):
    """Issue 28 item 10: a full disk while the cache is written was a SafetensorError traceback; now one line
    naming the file and the reason, exit 1, no file and no temporary file, an existing cache kept as it was."""
    import errno

    from safetensors import SafetensorError

    import maskgit_cli.weights as weights

    def full(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a cache")
        if error == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device", path)
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull }) (os error 28)")

    out = tmp_path / "caches" / "t.tokens"
    out.parent.mkdir()
    monkeypatch.setattr(weights, "save_file", full)
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--workers", "0")
    _one_line_error(r, f"{out}: cannot write the token cache (No space left on device); nothing was written")
    assert list(out.parent.iterdir()) == []
    monkeypatch.undo()  # an earlier cache, written while the disk had room
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--device", "cpu", "--workers", "0")
    assert r.exit_code == 0, r.output
    earlier = out.read_bytes()
    monkeypatch.setattr(weights, "save_file", full)
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", out, "--overwrite", "--workers", "0")
    _one_line_error(r, "cannot write the token cache (No space left on device)")
    assert list(out.parent.iterdir()) == [out] and out.read_bytes() == earlier


def test_deeply_nested_cache_metadata_is_one_line(tmp_path):
    """Metadata is untrusted (issue 28): JSON nested past Python's recursion limit is refused like any bad value."""
    path = _write_cache(tmp_path / "deep.tokens")
    meta = dict(read_metadata(path))
    for key in ("files", "vqgan_config"):
        save_tensors(path, {"tokens": _good_tokens()}, {**meta, key: "[" * 100_000 + "]" * 100_000})
        with pytest.raises(MaskgitError, match=r"deep\.tokens: token cache metadata is incomplete or invalid"):
            load_token_cache(path)
