"""The demo script (`make demo`) runs end to end on tiny data with tiny weights: every README step works."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskgit_cli.data.mask_generator import write_masks
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS
from maskgit_cli.weights import save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_script_on_tiny_data(tmp_path, make_images):
    data = tmp_path / "data"
    make_images(data / "train", 24, digits=5)
    make_images(data / "test", 4, seed=1)
    write_masks(data / "test", data / "mask64", "stroke", seed=0, masked_out=data / "masked_image")
    make_images(data / "val", 4, seed=2)
    write_masks(data / "val", data / "val_mask64", "stroke", seed=1)
    torch.manual_seed(0)
    save_model(tmp_path / "v.safetensors", VQGAN(VQGAN_PRESETS["tiny"]), "vqgan")
    save_model(
        tmp_path / "t.safetensors", MaskGITTransformer(get_preset("tiny", num_codebook_vectors=64)), "transformer"
    )
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "DATA": str(data),
        "VQGAN": str(tmp_path / "v.safetensors"),
        "TRANSFORMER": str(tmp_path / "t.safetensors"),
        "PRESET": "tiny",
        "STEPS": "4",
        "DEVICE": "cpu",
        "MASKGIT": str(Path(sys.executable).parent / "maskgit"),
        "MASKGIT_NO_PROGRESS": "1",
    }
    r = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh")], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    assert "FID skipped:" in r.stderr and "inception" in r.stderr.lower()
    assert "stopped at step 2/4" in r.stdout and "finished at step 4/4" in r.stdout
    assert len(list((out / "inpaint" / "images").iterdir())) == 4
    assert (out / "inpaint" / "overview.png").exists() and (out / "score.txt").read_text().strip()
    assert "Where everything is" in r.stderr and "overview" in r.stdout


def test_demo_without_weights_is_one_line(tmp_path):
    env = {**os.environ, "VQGAN": str(tmp_path / "missing.safetensors"), "OUT": str(tmp_path / "o")}
    r = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh")], capture_output=True, text=True, env=env)
    assert (
        r.returncode == 1
        and r.stderr.strip()
        == f"Error: {tmp_path / 'missing.safetensors'} is missing "
        "(the default weights ship in weights/; 'make weights' rebuilds them)"
    )
