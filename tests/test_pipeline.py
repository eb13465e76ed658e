"""The Python entry point: the README's three lines, the same pixels as the CLI, samples, steps, bad input."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli.errors import MaskgitError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "emoji64"


@pytest.fixture(scope="module")
def pipe():
    from maskgit_cli import Inpainter

    return Inpainter.from_pretrained(device="cpu")


def test_readme_python_example_runs_as_written(pipe):
    code = re.search(r"## From Python\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    scope = {
        "image": Image.open(DATA / "masked_image" / "image_000.png"),
        "mask": Image.open(DATA / "mask64" / "mask_000.png"),
    }
    exec(code, scope)  # noqa: S102 - the README's own example
    result = scope["result"]
    assert isinstance(result, Image.Image) and result.size == (64, 64)
    known = np.asarray(scope["mask"]) == 255
    assert (np.asarray(result)[known] == np.asarray(scope["image"].convert("RGB"))[known]).all()


def test_python_and_cli_give_the_same_pixels(pipe, cli, tmp_path):
    import shutil

    for folder in ("masked_image", "mask64"):
        (tmp_path / folder).mkdir()
        for p in sorted((DATA / folder).iterdir())[:3]:
            shutil.copy(p, tmp_path / folder / p.name)
    r = cli("inpaint", "--images", tmp_path / "masked_image", "--masks", tmp_path / "mask64", "-o", tmp_path / "o",
            "--device", "cpu", "--grids", "none", "--schedule", "square", "--seed", "4")  # fmt: skip
    assert r.exit_code == 0, r.output
    images = [Image.open(p) for p in sorted((tmp_path / "masked_image").iterdir())]
    masks = [Image.open(p) for p in sorted((tmp_path / "mask64").iterdir())]
    results = pipe(images, masks, schedule="square", seed=4)
    for i, result in enumerate(results):
        cli_pixels = np.asarray(Image.open(tmp_path / "o" / "images" / f"image_{i:03d}.png"))
        assert (np.asarray(result) == cli_pixels).all(), i
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["settings"]["decode"]["schedule"] == "square"


def test_samples_steps_and_input_kinds(pipe):
    image = np.array(Image.open(DATA / "masked_image" / "image_001.png").convert("RGB"))
    mask = np.asarray(Image.open(DATA / "mask64" / "mask_001.png")) == 255  # bool: True = known
    samples = pipe(image, mask, num_samples=3)
    assert len(samples) == 3 and len({np.asarray(s).tobytes() for s in samples}) > 1
    again = pipe(torch.from_numpy(image).permute(2, 0, 1).float() / 255, mask, num_samples=3)
    assert all((np.asarray(a) == np.asarray(b)).all() for a, b in zip(samples, again))  # tensor input, same seeds
    out = pipe(image, mask, return_steps=True, sweet_spot=3)
    assert len(out.images) == 1 and len(out.step_images[0]) == 3 and len(out.step_masks[0]) == 4
    assert out.step_masks[0][-1].getextrema() == (255, 255)  # nothing masked after the last step


def test_bad_inputs_are_one_clear_error(pipe):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(MaskgitError, match="image 0 is 32x32, but the model inpaints 64x64"):
        pipe(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))
    with pytest.raises(MaskgitError, match=r"mask 0: expected \(64,64\)"):
        pipe(image, np.zeros((32, 32), np.uint8))
    with pytest.raises(MaskgitError, match="only the values 0 and 1"):
        pipe(image, np.eye(64, dtype=np.uint8))
    with pytest.raises(MaskgitError, match="2 images but 3 masks"):
        pipe([image, image], [np.zeros((64, 64), np.uint8)] * 3)
    with pytest.raises(MaskgitError, match="--sampling"):
        pipe(image, np.zeros((64, 64), np.uint8), sampling="bogus")
