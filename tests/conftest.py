"""Shared fixtures: tiny models and image folders made on the fly (no downloads, no user data)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("MASKGIT_NO_PROGRESS", "1")
# Tests run in parallel (pytest -n 2 on 2 cores): one intra-op thread per worker avoids oversubscription.
torch.set_num_threads(1)


def make_images(folder, n: int, size: int = 64, seed: int = 0, prefix: str = "image_", digits: int = 3):
    """Write n smooth random RGB PNGs (blobs on white) named like the lab's files; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.full((size, size, 3), 255.0)
        for _ in range(3):
            cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(5, size / 3)
            colour = rng.uniform(0, 255, 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = colour
        path = folder / f"{prefix}{i:0{digits}d}.png"
        Image.fromarray(img.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    make_images(folder, 6)
    return folder


@pytest.fixture
def tiny_vqgan():
    from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS

    torch.manual_seed(0)
    return VQGAN(VQGAN_PRESETS["tiny"]).eval()


@pytest.fixture
def tiny_vqgan_file(tmp_path, tiny_vqgan):
    from maskgit_cli.weights import save_model

    path = tmp_path / "vqgan.safetensors"
    save_model(path, tiny_vqgan, "vqgan")
    return path


@pytest.fixture
def cli():
    """Run `maskgit ...` in-process; returns the typer.testing Result (stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from maskgit_cli.cli import app

    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No Inception file anywhere; any network connection raises (and is recorded in the returned list)."""
    import socket

    from maskgit_cli.evaluation import fid, inception

    monkeypatch.setattr(inception, "CLEAN_CACHE_DIR", str(tmp_path / "cleanfid-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("MASKGIT_INCEPTION", raising=False)
    monkeypatch.delenv("MASKGIT_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(fid, "FEATURE_EXTRACTOR_OVERRIDE", None)
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts
