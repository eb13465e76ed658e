"""`reconstruct_folder` and `maskgit reconstruct`: files, scores, the comparison grid, identical images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS
from maskgit_cli.vqgan.reconstruct import reconstruct_folder


def test_reconstruct_writes_files_scores_and_grid(tmp_path, tiny_vqgan_file, make_images):
    paths = make_images(tmp_path / "in", 5)
    s = reconstruct_folder(tmp_path / "in", tiny_vqgan_file, tmp_path / "out", batch_size=2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    assert s["images"] == 5 and s["identical"] == 0 and np.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1
    assert 0 < s["codebook_usage"] <= 1 and s["num_codes"] == 64
    grid = Image.open(s["grid"])  # beside the output folder: OUT-grid.png; 2 rows (originals, reconstructions)
    assert s["grid"].endswith("out-grid.png") and grid.size == (2 + 5 * (128 + 2), 2 + 2 * (128 + 2))
    with pytest.raises(MaskgitError, match="overwrite the originals"):
        reconstruct_folder(tmp_path / "in", tiny_vqgan_file, tmp_path / "in")


def test_identical_images_give_inf_psnr_handled(tmp_path, monkeypatch, tiny_vqgan_file, make_images):
    make_images(tmp_path / "in", 3)
    # a VQGAN whose decode returns exactly its input: every reconstruction is identical
    model = VQGAN(VQGAN_PRESETS["tiny"])
    cache = {}

    def encode(x, known=None):
        cache["x"] = x
        return torch.zeros(len(x), 16, 16, dtype=torch.long)

    monkeypatch.setattr(model, "encode", encode)
    monkeypatch.setattr(model, "decode", lambda idx: cache["x"])
    s = reconstruct_folder(tmp_path / "in", model, tmp_path / "out")
    assert s["identical"] == 3 and s["psnr"] is None and s["ssim"] == pytest.approx(1.0)
    json.dumps(s, allow_nan=False)  # strict JSON


def test_cli_reconstruct_json(tmp_path, tiny_vqgan_file, make_images, cli):
    make_images(tmp_path / "in", 4)
    r = cli(
        "reconstruct",
        tmp_path / "in",
        "--vqgan",
        tiny_vqgan_file,
        "-o",
        tmp_path / "out",
        "--json",
        "--device",
        "cpu",
        "--batch-size",
        "3",
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["images"] == 4 and len(list((tmp_path / "out").iterdir())) == 4 and "psnr" in s
    assert set(s["context_fidelity"]) == {"0", "1"} and s["encoder_reach"] is None
    r = cli("reconstruct", tmp_path / "nope", "--vqgan", tiny_vqgan_file, "-o", tmp_path / "o2")
    assert r.exit_code == 1 and "no such folder" in r.output


def test_context_fidelity_is_complete_for_a_local_encoder_and_not_for_an_image_wide_one(tmp_path, make_images, cli):
    """reconstruct encodes every image again with generated holes filled gray: a local encoder whose tokens see their
    own patch keeps every token the holes do not touch, the tiny preset (GroupNorm and attention over the image)
    does not."""
    from dataclasses import replace

    from maskgit_cli.weights import save_model

    make_images(tmp_path / "in", 6)
    torch.manual_seed(0)
    local = VQGAN(replace(VQGAN_PRESETS["tiny"], encoder_reach=0, local_dim=32, local_blocks=1)).eval()
    s = reconstruct_folder(tmp_path / "in", local, tmp_path / "out-local", batch_size=4)
    # 1 by construction; a token whose latent lies halfway between two codes may still flip with the rounding of a
    # differently aligned matmul (1 token in 67,000 for the default weights on emoji64)
    assert min(s["context_fidelity"].values()) > 0.999 and s["encoder_reach"] == 0
    wide = reconstruct_folder(tmp_path / "in", VQGAN(VQGAN_PRESETS["tiny"]).eval(), tmp_path / "out-wide")
    assert wide["context_fidelity"]["0"] < wide["context_fidelity"]["1"] < 1.0
    save_model(tmp_path / "local.safetensors", local, "vqgan")
    r = cli(
        "reconstruct",
        tmp_path / "in",
        "--vqgan",
        tmp_path / "local.safetensors",
        "-o",
        tmp_path / "o",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.output
    assert "context fidelity" in r.stdout and "100.0% at --dilate 1" in r.stdout
    assert "a token sees its own patch" in r.stdout
