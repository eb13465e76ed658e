"""`reconstruct_folder` and `maskgit reconstruct`; grids."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from maskgit_cli.cli import app
from maskgit_cli.errors import MaskgitError
from maskgit_cli.viz import make_grid, save_grid
from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS
from maskgit_cli.vqgan.reconstruct import reconstruct_folder
from maskgit_cli.weights import save_model

from .conftest import make_images


@pytest.fixture
def vqgan_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vq.safetensors"
    save_model(path, VQGAN(VQGAN_PRESETS["tiny"]), "vqgan")
    return path


def test_reconstruct_writes_files_scores_and_grid(tmp_path, vqgan_file):
    paths = make_images(tmp_path / "in", 5)
    s = reconstruct_folder(tmp_path / "in", vqgan_file, tmp_path / "out", batch_size=2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert s["images"] == 5 and s["identical"] == 0 and np.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1
    assert 0 < s["codebook_usage"] <= 1 and s["num_codes"] == 64
    grid = Image.open(s["grid"])  # beside the output folder: OUT-grid.png; 2 rows (originals, reconstructions)
    assert s["grid"].endswith("out-grid.png") and grid.size == (2 + 5 * (128 + 2), 2 + 2 * (128 + 2))
    with pytest.raises(MaskgitError, match="overwrite the originals"):
        reconstruct_folder(tmp_path / "in", vqgan_file, tmp_path / "in")


def test_identical_images_give_inf_psnr_handled(tmp_path, monkeypatch, vqgan_file):
    make_images(tmp_path / "in", 3)
    # a VQGAN whose decode returns exactly its input: every reconstruction is identical
    model = VQGAN(VQGAN_PRESETS["tiny"])
    cache = {}

    def encode(x):
        cache["x"] = x
        return torch.zeros(len(x), 16, 16, dtype=torch.long)

    monkeypatch.setattr(model, "encode", encode)
    monkeypatch.setattr(model, "decode", lambda idx: cache["x"])
    s = reconstruct_folder(tmp_path / "in", model, tmp_path / "out")
    assert s["identical"] == 3 and s["psnr"] is None and s["ssim"] == pytest.approx(1.0)
    json.dumps(s, allow_nan=False)  # strict JSON


def test_cli_reconstruct_json(tmp_path, vqgan_file):
    make_images(tmp_path / "in", 4)
    r = CliRunner().invoke(
        app,
        [
            "reconstruct",
            str(tmp_path / "in"),
            "--vqgan",
            str(vqgan_file),
            "-o",
            str(tmp_path / "out"),
            "--json",
            "--device",
            "cpu",
            "--batch-size",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["images"] == 4 and len(list((tmp_path / "out").iterdir())) == 4 and "psnr" in s
    r = CliRunner().invoke(
        app, ["reconstruct", str(tmp_path / "nope"), "--vqgan", str(vqgan_file), "-o", str(tmp_path / "o2")]
    )
    assert r.exit_code == 1 and "no such folder" in r.output


def test_grid_layout():
    a = np.zeros((4, 4, 3), np.uint8)
    g = make_grid([[a, a, a], [a]], pad=1)
    assert g.shape == (1 + 2 * 5, 1 + 3 * 5, 3)
    assert (g[0] == 160).all() and (g[6:10, 6:10] == 255).all()  # separator; blank tile fills the short row
    g = make_grid([[np.ones((4, 4)), None]], pad=0, scale=2)  # grayscale float, blank, upscaled
    assert g.shape == (8, 16, 3) and (g == 255).all()
    with pytest.raises(ValueError, match="must all be 4x4"):
        make_grid([[a, np.zeros((5, 5, 3), np.uint8)]])


def test_save_grid_png(tmp_path):
    p = save_grid([[np.zeros((8, 8, 3), np.uint8)]], tmp_path / "sub" / "g.png")
    assert Image.open(p).size == (12, 12)
