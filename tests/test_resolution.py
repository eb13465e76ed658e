"""Models at the resolution of the data: the VQGAN presets at any resolution and downsampling (the defaults are
today's presets exactly), the token grid taken from the VQGAN by every later stage (tokenize, train, inpaint of
images of any size, sweep, score), and a model of one grid refusing a cache or partner of another in one line."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS, vqgan_preset
from maskgit_cli.vqgan.resolution import DOWNSAMPLES, RESOLUTIONS, check_resolution, grid_text, tokens_text

SIZES = [(r, f) for r in RESOLUTIONS for f in DOWNSAMPLES if r // f >= 4]


# ---------------------------------------------------------------------------------------------------------
# presets at any size


def test_the_defaults_are_todays_presets():
    for name, config in VQGAN_PRESETS.items():
        assert vqgan_preset(name) == config
        assert vqgan_preset(name, 64, 4) == config


def test_the_shipped_vqgan_is_the_local_preset_at_64():
    from maskgit_cli.weights import default_weights, load_config

    shipped = load_config(default_weights("vqgan"), "vqgan")[1]
    assert replace(shipped, tokens_of=None) == vqgan_preset("local")


@pytest.mark.parametrize("name", sorted(VQGAN_PRESETS))
def test_every_preset_builds_for_every_size(name):
    for resolution, downsample in SIZES:
        c = vqgan_preset(name, resolution, downsample)
        steps = int(np.log2(downsample))
        assert (c.img_resolution, c.latent_resolution) == (resolution, resolution // downsample)
        assert len(c.enc_downsample_after) == len(c.dec_upsample_after) == steps
        assert len(c.enc_channels) - len(VQGAN_PRESETS[name].enc_channels) == steps - 2
        assert c.attn_resolutions == ((c.latent_resolution,) if VQGAN_PRESETS[name].attn_resolutions else ())


@pytest.mark.parametrize("name", ["tiny", "local", "small"])
@pytest.mark.parametrize("resolution, downsample", [(32, 4), (64, 8), (128, 16), (128, 4)])
def test_a_scaled_vqgan_encodes_and_decodes_at_its_size(name, resolution, downsample):
    torch.manual_seed(0)
    model = VQGAN(vqgan_preset(name, resolution, downsample)).eval()
    tokens = model.encode(torch.rand(2, 3, resolution, resolution))
    grid = resolution // downsample
    assert tokens.shape == (2, grid, grid)
    assert model.decode(tokens).shape == (2, 3, resolution, resolution)


def test_the_local_encoder_reads_f_by_f_patches():
    """At downsample 8 a token is a function of its own 8x8 patch: changing a patch changes its token alone."""
    torch.manual_seed(0)
    model = VQGAN(vqgan_preset("local", 128, 8)).eval()
    x = torch.rand(1, 3, 128, 128)
    y = x.clone()
    y[..., 40:48, 16:24] = torch.rand(3, 8, 8)  # the patch of token (5, 2)
    with torch.no_grad():
        changed = (model.encode_latents(x) - model.encode_latents(y)).abs().amax(1)[0] > 0
    assert changed.nonzero().tolist() == [[5, 2]]


def test_code_patches_decoded_from_a_vqgan_are_f_by_f():
    from maskgit_cli.vqgan.code_patches import vqgan_code_patches

    torch.manual_seed(0)
    for size, grid in [((32, 4), 8), ((128, 4), 16)]:
        model = VQGAN(vqgan_preset("tiny", *size)).eval()
        patches = vqgan_code_patches(model)
        f = size[1]
        assert patches.shape == (64, 3, f, f)
        c = grid // 2 * f  # the centre patch of a grid filled with code 5 (16x16 tokens at most)
        one = model.decode(torch.full((1, grid, grid), 5))[0, :, c : c + f, c : c + f]
        assert torch.allclose(patches[5], one, atol=1e-6)


@pytest.mark.parametrize(
    "resolution, downsample, message",
    [
        (100, 4, r"--resolution 100: expected a power of two from 32 to 512"),
        (1024, 4, r"--resolution 1024: expected a power of two"),
        (64, 2, r"--downsample 2: expected one of 4, 8, 16"),
        (32, 16, r"a 2x2 token grid is too small"),
    ],
)
def test_sizes_no_vqgan_is_built_for_are_refused(resolution, downsample, message):
    with pytest.raises(MaskgitError, match=message):
        check_resolution(resolution, downsample)
    with pytest.raises(MaskgitError, match=message):
        vqgan_preset("tiny", resolution, downsample)


def test_grids_as_people_read_them():
    assert tokens_text(256) == "16x16 tokens (256)" and tokens_text(200) == "200 tokens"
    assert grid_text(vqgan_preset("local", 128, 4)) == "32x32 (128x128 images, downsample 4)"


def test_the_sizes_module_is_torch_free():
    code = "import sys, maskgit_cli.vqgan.resolution; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_saved_before_the_sizes_existed_resumes(tmp_path, cli, make_images):
    make_images(tmp_path / "train", 4)
    args = ["--preset", "tiny", "--batch-size", "4", "--max-steps", "2", "--device", "cpu"]
    r = cli("train-vqgan", tmp_path / "train", "-o", tmp_path / "run", *args, "--stop-at", "1")
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"].pop("resolution") is None and config["train"].pop("downsample") is None
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    r = cli("train-vqgan", "--resume", tmp_path / "run")
    assert r.exit_code == 0 and "finished at step 2/2" in r.stdout, r.output


def test_train_vqgan_refuses_a_bad_size_in_one_line(tmp_path, cli, make_images):
    make_images(tmp_path / "train", 4, size=32)
    r = cli("train-vqgan", tmp_path / "train", "-o", tmp_path / "run", "--preset", "tiny", "--resolution", "48")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "--resolution 48: expected a power of two from 32 to 512" in r.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------
# train-vqgan -> tokenize -> train -> inpaint at 32 and 128


def _chain(root, cli, run_json, make_images, resolution: int, downsample: int) -> dict:
    """A tiny VQGAN of ``resolution`` / ``downsample``, its token caches and a tiny transformer, a few steps each."""
    make_images(root / "train", 8, size=resolution)
    make_images(root / "val", 4, size=resolution, seed=1)
    steps = ["--max-steps", "3", "--batch-size", "4", "--device", "cpu", "--json"]
    r = cli("train-vqgan", root / "train", "-o", root / "vqgan", "--preset", "tiny", "--resolution", resolution,
            "--downsample", downsample, *steps)  # fmt: skip
    assert r.exit_code == 0, r.output
    vqgan = json.loads(r.stdout)["weights"]
    tokens = {}
    for split in ("train", "val"):
        s = run_json("tokenize", root / split, "--vqgan", vqgan, "-o", root / f"{split}.tokens")
        tokens[split] = root / f"{split}.tokens"
        assert s["grid"] == [resolution // downsample] * 2
    r = cli("train", tokens["train"], "--val", tokens["val"], "-o", root / "maskgit", "--preset", "tiny", *steps)
    assert r.exit_code == 0, r.output
    return {"vqgan": vqgan, "transformer": json.loads(r.stdout)["weights"], **tokens, "root": root}


@pytest.fixture(scope="module")
def models(tmp_path_factory, make_images):
    """The chain at 32 (downsample 4: 8x8 tokens) and 128 (downsample 8: 16x16; downsample 4: 32x32)."""
    from typer.testing import CliRunner

    from maskgit_cli.cli import app

    runner = CliRunner()

    def cli(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    def run_json(*args):
        r = cli(*args, "--json", "--device", "cpu", "--workers", "0")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    root = tmp_path_factory.mktemp("resolution")
    return {
        size: _chain(root / f"{size[0]}-{size[1]}", cli, run_json, make_images, *size)
        for size in [(32, 4), (128, 8), (128, 4)]
    }


@pytest.mark.parametrize("size", [(32, 4), (128, 8), (128, 4)])
def test_the_grid_flows_from_the_vqgan(models, size):
    from maskgit_cli.vqgan.tokens import load_token_cache
    from maskgit_cli.weights import load_model

    resolution, downsample = size
    grid = resolution // downsample
    m = models[size]
    vqgan = load_model(m["vqgan"], "vqgan")
    assert (vqgan.config.img_resolution, vqgan.config.latent_resolution) == (resolution, grid)
    cache = load_token_cache(m["train"])
    assert cache.tokens.shape == (8, grid, grid) and cache.image_size == resolution
    assert cache.patch_stats.patch == downsample  # guidance's code patches: f x f
    transformer = load_model(m["transformer"], "transformer")
    assert transformer.pos_emb.shape[0] == transformer.config.num_image_tokens == grid * grid
    config = json.loads((m["root"] / "vqgan" / "config.json").read_text())
    assert (config["train"]["resolution"], config["train"]["downsample"]) == size


def _inputs(folder, masks, make_photo):
    """A 300x200 JPEG and a 97x131 PNG with a box hole each; returns {name: (pixels as read, known)}."""
    folder.mkdir()
    masks.mkdir()
    out = {}
    for name, (h, w), box in [("a_photo.jpg", (200, 300), (60, 120, 100, 180)),
                              ("b_small.png", (131, 97), (40, 80, 30, 60))]:  # fmt: skip
        Image.fromarray(make_photo(h, w)).save(folder / name, quality=90)
        mask = np.full((h, w), 255, np.uint8)
        y0, y1, x0, x1 = box
        mask[y0:y1, x0:x1] = 0
        Image.fromarray(mask).save(masks / (name.rsplit(".", 1)[0] + ".png"))
        out[name.rsplit(".", 1)[0]] = (np.asarray(Image.open(folder / name).convert("RGB")), mask == 255)
    return out


@pytest.mark.parametrize("size", [(128, 8), (128, 4), (32, 4)])
def test_inpaint_keeps_sizes_and_known_pixels(tmp_path, cli, models, make_photo, size):
    m = models[size]
    inputs = _inputs(tmp_path / "images", tmp_path / "masks", make_photo)
    r = cli("inpaint", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--transformer",
            m["transformer"], "--vqgan", m["vqgan"], "-o", tmp_path / "out", "--total-iter", "4", "--device", "cpu",
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    for stem, (pixels, known) in inputs.items():
        result = np.asarray(Image.open(tmp_path / "out" / "images" / f"{stem}.png"))
        assert result.shape == pixels.shape
        assert np.array_equal(result[known], pixels[known])  # known pixels bit-identical
        assert not np.array_equal(result[~known], pixels[~known])
    rows = {row["input"]: row for row in json.loads((tmp_path / "out" / "report.json").read_text())["images"]}
    assert rows["a_photo.jpg"]["size"] == [300, 200] and rows["b_small.png"]["size"] == [97, 131]


def test_the_inpainter_takes_its_windows_from_the_vqgan(models, make_photo):
    from maskgit_cli.decoding.pipeline import Inpainter

    m = models[(128, 4)]
    pipe = Inpainter.from_pretrained(m["transformer"], vqgan=m["vqgan"], device="cpu", total_iter=2)
    assert (pipe.size, pipe.grid) == (128, 32)
    holes = np.zeros((20, 20), bool)
    holes[5:10, 5:10] = True
    with pytest.raises(MaskgitError, match=r"too small to inpaint \(at least 32x32 pixels\)"):
        pipe.fill([make_photo(20, 20)], [holes], fit="resize")
    image = make_photo(256, 256)
    holes = np.zeros((256, 256), bool)
    holes[100:130, 90:140] = True
    (filled,) = pipe.fill([image], [holes], fit="crop")
    assert [w[2:] for w in filled.windows] == [(128, 128)] and filled.inputs[0].shape == (128, 128, 3)
    assert np.array_equal(filled.image[~holes], image[~holes])


def test_sweep_and_score_at_128(tmp_path, cli, models, make_images):
    from maskgit_cli.data.mask_generator import write_masks

    m = models[(128, 8)]
    make_images(tmp_path / "gt", 2, size=128, seed=3)
    write_masks(tmp_path / "gt", tmp_path / "masks", "box", seed=0, masked_out=tmp_path / "masked")
    r = cli("sweep", "--images", tmp_path / "masked", "--masks", tmp_path / "masks", "--ref", tmp_path / "gt",
            "--transformer", m["transformer"], "--vqgan", m["vqgan"], "-o", tmp_path / "sweep", "--total-iter", "2",
            "--metric", "psnr", "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["cells"]
    r = cli("inpaint", "--images", tmp_path / "masked", "--masks", tmp_path / "masks", "--transformer",
            m["transformer"], "--vqgan", m["vqgan"], "-o", tmp_path / "out", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("score", tmp_path / "out" / "images", tmp_path / "gt", "--masks", tmp_path / "masks", "--json")
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------------------------------------
# a model of one grid refuses a cache or a partner of another, in one line naming both


def _one_line_error(r) -> str:
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error: "), r.output
    return r.stderr


def test_inpaint_refuses_a_vqgan_of_another_grid(tmp_path, cli, models, make_images):
    make_images(tmp_path / "images", 1, size=128)
    r = cli("inpaint", "--images", tmp_path / "images", "--mask-kind", "box", "--transformer",
            models[(32, 4)]["transformer"], "--vqgan", models[(128, 8)]["vqgan"], "-o", tmp_path / "out",
            "--device", "cpu")  # fmt: skip
    assert "the transformer expects 8x8 tokens (64) but the VQGAN makes 16x16 (128x128 images, downsample 8)" in (
        _one_line_error(r)
    )
    from maskgit_cli.decoding.pipeline import Inpainter

    with pytest.raises(MaskgitError, match=r"expects 32x32 tokens \(1024\) but the VQGAN makes 16x16"):
        Inpainter.from_pretrained(models[(128, 4)]["transformer"], vqgan=models[(128, 8)]["vqgan"], device="cpu")


def test_train_refuses_a_validation_cache_of_another_grid(tmp_path, cli, models):
    r = cli("train", models[(128, 8)]["train"], "--val", models[(32, 4)]["val"], "-o", tmp_path / "run",
            "--preset", "tiny", "--max-steps", "1", "--device", "cpu")  # fmt: skip
    line = _one_line_error(r)
    assert f"{models[(32, 4)]['val']} holds 8x8 token grids (32x32 images)" in line
    assert f"{models[(128, 8)]['train']} holds 16x16 token grids (128x128 images)" in line
    assert not (tmp_path / "run").exists()


def test_train_resume_refuses_a_cache_of_another_grid(tmp_path, cli, models):
    args = ["--preset", "tiny", "--max-steps", "4", "--batch-size", "4", "--device", "cpu"]
    r = cli("train", models[(32, 4)]["train"], "-o", tmp_path / "run", *args, "--stop-at", "1")
    assert r.exit_code == 0, r.output
    r = cli("train", models[(128, 8)]["train"], "--resume", tmp_path / "run")
    line = _one_line_error(r)
    assert "the transformer expects 8x8 tokens (64)" in line
    assert f"{models[(128, 8)]['train']} holds 16x16 token grids (128x128 images)" in line


def test_tokenize_refuses_images_of_another_size(tmp_path, cli, models, make_images):
    make_images(tmp_path / "small", 2, size=32)
    r = cli("tokenize", tmp_path / "small", "--vqgan", models[(128, 8)]["vqgan"], "-o", tmp_path / "t.tokens",
            "--device", "cpu", "--workers", "0")  # fmt: skip
    assert "is 32x32, expected 128x128" in _one_line_error(r)
    assert not (tmp_path / "t.tokens").exists()
