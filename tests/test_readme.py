"""The README's walkthrough runs as written, on a tiny stand-in for the lab's files (no GPU, no Inception)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.data.mask_generator import write_masks
from maskgit_cli.vqgan.model import LAB_TEST_MEAN, LAB_TEST_STD, VQGAN, VQGANConfig

ROOT = Path(__file__).resolve().parents[1]
# The only edits to the README's commands: a tiny model and run instead of the lab's 72.7M-parameter 100 epochs.
SUBSTITUTIONS = {"--preset lab --epochs 100 --batch-size 64": "--preset tiny --max-steps 2 --batch-size 4"}
LAB_LIKE = dict(
    enc_channels=[32, 32, 32, 64, 64, 64], dec_channels=[32, 32, 64, 64, 64], latent_dim=32, num_codebook_vectors=128
)


def readme_commands(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        line = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def lab_files(root: Path, make_images) -> None:
    """VQGAN.pt/.yml with the lab's block layout, and lab3_dataset/{train,val,masked_image,mask64} + test_gt.csv."""
    torch.manual_seed(0)
    model = VQGAN(VQGANConfig(**LAB_LIKE))
    torch.save(model.state_dict(), root / "VQGAN.pt")
    lines = ["model_param:", "  image_channels: 3", "  img_resolution: 64", "  latent_resolution: 16"]
    (root / "VQGAN.yml").write_text("\n".join(lines + [f"  {k}: {v}" for k, v in LAB_LIKE.items()]) + "\n")
    data = root / "lab3_dataset"
    make_images(data / "train", 8, digits=5)
    make_images(data / "val", 4, seed=1, digits=5)
    make_images(root / "gt", 3, seed=2)
    write_masks(root / "gt", data / "mask64", "stroke", seed=0, masked_out=data / "masked_image")
    rows = [",".join(str(v) for v in np.asarray(Image.open(p)).reshape(-1)) for p in sorted((root / "gt").iterdir())]
    (root / "test_gt.csv").write_text(",".join(f"p{i}" for i in range(64 * 64 * 3)) + "\n" + "\n".join(rows) + "\n")
    make_images(root / "photos", 2, seed=3)


@pytest.mark.slow
def test_walkthrough_runs_as_written(tmp_path, make_images):
    lab_files(tmp_path, make_images)
    exe = str(Path(sys.executable).parent / "maskgit")
    env = {**os.environ, "MASKGIT_NO_PROGRESS": "1", "MASKGIT_NO_DOWNLOAD": "1"}
    commands = readme_commands("Walkthrough for the lab's files")
    assert len(commands) >= 7
    inline = re.findall(r"`(maskgit masks photos [^`]+)`", (ROOT / "README.md").read_text())
    for command in commands + inline:
        for old, new in SUBSTITUTIONS.items():
            command = command.replace(old, new)
        argv = shlex.split(command)
        assert argv[0] == "maskgit", command
        r = subprocess.run([exe, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        if argv[1] == "fid":  # no Inception weights here: one line naming the file to get
            assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
            assert "pt_inception-2015-12-05-6726825d.pth" in r.stderr
            continue
        assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
    inpainted = tmp_path / "runs" / "cats-inpaint"  # --lab: the lab's folders, grids for every image
    for folder, names in (
        ("test_results", "image_{:03d}.png"),
        ("mask_scheduling", "test_{}.png"),
        ("imga", "test_{}.png"),
    ):
        assert sorted(p.name for p in (inpainted / folder).iterdir()) == [names.format(i) for i in range(3)]
    settings = json.loads((inpainted / "report.json").read_text())["settings"]
    assert settings["decode"]["sampling"] == "argmax" and settings["composite"] is False and settings["dilate"] == 0
    assert settings["vqgan_mean"] == list(LAB_TEST_MEAN) and settings["vqgan_std"] == list(LAB_TEST_STD)
    assert (tmp_path / "runs" / "cats-sweep" / "sweep.csv").exists()
    assert len(list((tmp_path / "photos-masks").iterdir())) == 2


def test_the_main_path_shows_fit_on_your_own_folder():
    """Near the top, after the two set-up commands: `maskgit fit` on a folder of your own, then inpainting with the
    model, the same commands as the section below runs."""
    top = (ROOT / "README.md").read_text().split("## What it does", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", top, re.S)
    assert [line.split()[:2] for line in blocks[0].splitlines()] == [["make", "demo"], ["make", "test"]]
    commands = [line.split(" #")[0].rstrip() for line in blocks[1].splitlines()]
    assert [shlex.split(c)[1] for c in commands] == ["fit", "inpaint"]
    assert set(commands) <= set(readme_commands("Your own images, your own model"))


@pytest.mark.slow
def test_your_own_model_runs_as_written(tmp_path, make_images):
    """The README's `maskgit fit` path on a folder of 24 images, with a tiny preset and a half-minute budget instead
    of two hours: a model folder that info describes and inpaint uses."""
    make_images(tmp_path / "my-images", 24, seed=4)
    exe = str(Path(sys.executable).parent / "maskgit")
    env = {**os.environ, "MASKGIT_NO_PROGRESS": "1", "MASKGIT_NO_DOWNLOAD": "1"}
    commands = readme_commands("Your own images, your own model")
    assert [shlex.split(c)[1] for c in commands] == ["fit", "info", "inpaint"]
    for command in commands:
        command = command.replace("--time-budget 120", "--time-budget 0.5 --preset tiny")
        r = subprocess.run([exe, *shlex.split(command)[1:]], cwd=tmp_path, capture_output=True, text=True, env=env,
                           timeout=600)  # fmt: skip
        assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
    model = tmp_path / "models" / "mine"
    assert {"vqgan.safetensors", "transformer.safetensors", "card.json", "README.md"} <= {
        p.name for p in model.iterdir()
    }
    assert len(list((tmp_path / "inpainted" / "images").iterdir())) == 24
