"""Shared fixtures: tiny models, image folders, a stand-in for Inception and a toy training task, all made on the
fly (no downloads, no user data).

Test files use these as fixtures only: no test file imports this file or another test file (test_layout checks).
Helpers that build things are fixtures returning a function (``make_images``, ``write_csv``, ...), so a test asks
for them by name like any other fixture.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("MASKGIT_NO_PROGRESS", "1")
# Tests run in parallel (pytest -n 2 on 2 cores): one intra-op thread per worker avoids oversubscription.
torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------
# images


def _make_images(folder, n: int, size: int = 64, seed: int = 0, prefix: str = "image_", digits: int = 3):
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


def _photo(h: int, w: int, seed: int = 0):
    """A smooth synthetic photo (gradients and a disc) of any size, uint8 (H,W,3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w * 255, yy / h * 255, np.full((h, w), 128.0)], -1)
    img[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2] = rng.uniform(0, 255, 3)
    return img.astype(np.uint8)


def _read_pngs(folder) -> dict:
    """Every PNG under ``folder`` decoded: relative path -> (mode, pixels)."""
    out = {}
    for path in sorted(folder.rglob("*.png")):
        with Image.open(path) as img:
            img.load()
            out[path.relative_to(folder).as_posix()] = (img.mode, np.asarray(img))
    return out


@pytest.fixture
def pinned_renderer():
    """Skips a rebuild of a rendered emoji set (openmoji64, fluent128, the styles64 sets) unless the SVG renderer the
    builds are pinned to is installed: another resvg-py gives other pixels."""
    name, version = "resvg-py", "0.5.0"
    if importlib.util.find_spec("resvg_py") is None:
        pytest.skip(f"{name} is not installed (pip install {name}=={version})")
    if importlib.metadata.version(name) != version:
        pytest.skip(f"{name} {importlib.metadata.version(name)} is not the pinned {version}")


@pytest.fixture(scope="session")
def read_pngs():
    """``read_pngs(folder)``: every PNG of a data set (data/emoji64, ...) decoded: relative path -> (mode, pixels)."""
    return _read_pngs


@pytest.fixture(scope="session")
def make_photo():
    """``make_photo(h, w, seed=0)``: a smooth synthetic photo of any size, uint8 (H,W,3)."""
    return _photo


@pytest.fixture(scope="session")
def make_images():
    """``make_images(folder, n, size=64, seed=0, prefix="image_", digits=3)``: write n smooth random RGB PNGs
    (blobs on white) named like the lab's files; returns their paths."""
    return _make_images


@pytest.fixture
def image_dir(tmp_path):
    """Six 64x64 images, image_000.png ... image_005.png."""
    folder = tmp_path / "images"
    _make_images(folder, 6)
    return folder


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    """Two folders of 16 different 64x64 images, ``a/`` and ``b/``, shared by a module's tests (do not modify)."""
    root = tmp_path_factory.mktemp("image-sets")
    _make_images(root / "a", 16, seed=1)
    _make_images(root / "b", 16, seed=2)
    return root


def _write_csv(path, folder, header=True):
    files = sorted(folder.iterdir())
    with open(path, "w") as f:
        if header:
            f.write(",".join(str(i) for i in range(64 * 64 * 3)) + "\n")
        for p in files:
            f.write(",".join(str(v) for v in np.asarray(Image.open(p).convert("RGB")).reshape(-1)) + "\n")
    return path


@pytest.fixture(scope="session")
def write_csv():
    """``write_csv(path, folder, header=True)``: the folder's 64x64 images as the rows of a lab-style test_gt.csv
    (one image per row, H*W*3 values in HWC order); returns ``path``."""
    return _write_csv


def _make_test_set(root, n: int):
    from maskgit_cli.data.mask_generator import write_masks

    _make_images(root / "gt", n, seed=1)
    write_masks(root / "gt", root / "mask64", "stroke", seed=0, masked_out=root / "masked_image")
    return root


@pytest.fixture(scope="session")
def make_test_set():
    """``make_test_set(root, n)``: a tiny lab-layout test set under ``root``: ``gt/`` (n images), ``mask64/``
    (stroke masks) and ``masked_image/`` (the images with gray holes); returns ``root``."""
    return _make_test_set


# ---------------------------------------------------------------------------------------------------------
# tiny models


@pytest.fixture
def tiny_vqgan():
    """The tiny VQGAN preset (64 codes, 16x16 tokens for 64x64 images), seeded, in eval mode."""
    from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS

    torch.manual_seed(0)
    return VQGAN(VQGAN_PRESETS["tiny"]).eval()


@pytest.fixture
def tiny_vqgan_file(tmp_path, tiny_vqgan):
    """``tiny_vqgan`` saved as ``tmp_path/vqgan.safetensors``."""
    from maskgit_cli.weights import save_model

    path = tmp_path / "vqgan.safetensors"
    save_model(path, tiny_vqgan, "vqgan")
    return path


@pytest.fixture
def tiny_transformer():
    """The tiny transformer preset for the tiny VQGAN's 64 codes, seeded, in eval mode; its token embeddings are
    spread (N(0, 1)) so that the logits are informative enough for confidences to differ."""
    from maskgit_cli.transformer.model import MaskGITTransformer, get_preset

    torch.manual_seed(0)
    model = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=64)).eval()
    with torch.no_grad():
        model.tok_emb.weight.normal_(0, 1.0)
    return model


@pytest.fixture
def tiny_transformer_file(tmp_path, tiny_transformer):
    """``tiny_transformer`` saved as ``tmp_path/transformer.safetensors``."""
    from maskgit_cli.weights import save_model

    path = tmp_path / "transformer.safetensors"
    save_model(path, tiny_transformer, "transformer")
    return path


# ---------------------------------------------------------------------------------------------------------
# the command line


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
def run_json(cli):
    """``run_json(command, *args)``: run a command that reads images with ``--json --device cpu --workers 0``,
    check that it succeeded and return its parsed JSON output."""
    import json

    def run(*args):
        r = cli(*args, "--json", "--device", "cpu", "--workers", "0")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    return run


# ---------------------------------------------------------------------------------------------------------
# FID without Inception


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


class TinyExtractor:
    """Deterministic stand-in for Inception: fixed random conv on the 299x299 input, mean and max pooled (8-d)."""

    name = "test-tiny-conv"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.weight = torch.randn(4, 3, 13, 13, generator=g) / 13
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 299, 299) and float(x.max()) <= 255.0
        self.calls += 1
        y = torch.relu(torch.nn.functional.conv2d(x / 127.5 - 1, self.weight, stride=13))
        return torch.cat([y.mean((2, 3)), y.amax((2, 3))], dim=1)


@pytest.fixture
def tiny_extractor(monkeypatch):
    """A :class:`TinyExtractor` installed as FID's feature extractor (``fid.FEATURE_EXTRACTOR_OVERRIDE``) for the
    test; ``type(tiny_extractor)()`` makes another one with the same weights."""
    from maskgit_cli.evaluation import fid

    ext = TinyExtractor()
    monkeypatch.setattr(fid, "FEATURE_EXTRACTOR_OVERRIDE", ext)
    return ext


# ---------------------------------------------------------------------------------------------------------
# the shared training loop on a toy task


class ToyTask:
    """Linear regression with noise from the global torch RNG (so RNG restore matters)."""

    def __init__(self, n=40, total=20, nan_at=None, signal_at=None):
        from maskgit_cli.training.optim import WarmupCosine, make_adamw

        torch.manual_seed(0)
        self.x = torch.randn(n, 4)
        self.y = self.x @ torch.tensor([1.0, -2.0, 3.0, 0.5]) + 0.1
        self.model = torch.nn.Linear(4, 1)
        self.opt = make_adamw(self.model, 0.05, weight_decay=0.01)
        self.schedule = WarmupCosine(0.05, total, warmup_steps=3)
        self.nan_at, self.signal_at = nan_at, signal_at

    def train_step(self, indices, step):
        from maskgit_cli.training.optim import set_lr

        if step == self.signal_at:
            os.kill(os.getpid(), self.signal_at_kind)
        set_lr(self.opt, self.schedule(step))
        x = self.x[indices] + 0.01 * torch.randn(len(indices), 4)
        loss = ((self.model(x).squeeze(1) - self.y[indices]) ** 2).mean()
        if step == self.nan_at:
            return {"loss": float("nan")}
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    signal_at_kind = signal.SIGINT

    def evaluate(self):
        with torch.no_grad():
            return {"mse": ((self.model(self.x).squeeze(1) - self.y) ** 2).mean().item()}

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def export(self, path, metadata):
        from maskgit_cli.weights import save_tensors

        save_tensors(path, self.model.state_dict(), {"kind": "toy", **metadata})


def _fit_toy(tmp_path, name="run", resume=False, task=None, **loop):
    from maskgit_cli.training.loop import LoopConfig, fit
    from maskgit_cli.training.run import RunDir

    run = RunDir(tmp_path / name)
    run.start({"toy": 1}, resume=resume, may_differ=("stop_at",))
    cfg = LoopConfig(
        **{
            "batch_size": 8,
            "max_steps": 20,
            "eval_every": 5,
            "log_every": 2,
            "best_metric": "mse",
            "best_mode": "min",
            **loop,
        }
    )
    task = task or ToyTask(total=cfg.max_steps)
    return task, run, fit(task, run, 40, cfg, resume=resume)


@pytest.fixture(scope="session")
def toy_task():
    """The :class:`ToyTask` class: ``toy_task(total=20, nan_at=None, signal_at=None)`` makes one."""
    return ToyTask


@pytest.fixture(scope="session")
def fit_toy():
    """``fit_toy(tmp_path, name="run", resume=False, task=None, **loop)``: start (or resume) the run folder
    ``tmp_path/name`` and fit a toy task (a new :class:`ToyTask` unless given) over 40 samples; returns
    ``(task, run_dir, fit_result)``. ``loop`` overrides the :class:`LoopConfig` fields (max_steps 20, batch 8,
    eval every 5 steps on the lowest ``mse``)."""
    return _fit_toy


# ---------------------------------------------------------------------------------------------------------
# outputs that cannot be written


def _file_tree(root):
    return {p.relative_to(root): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="session")
def file_tree():
    """``file_tree(root)``: every path under ``root`` with its bytes (None for a folder), to check that nothing was
    written or lost."""
    return _file_tree


@pytest.fixture
def unwritable(monkeypatch):
    """``unwritable(how, root)`` makes ``root/runs`` unwritable: ``below-a-file`` (runs is a file),
    ``rename-refused`` (os.replace refused, what a read-only folder does to atomic writes; root ignores chmod) or
    ``mkdir-refused``; the message the error line must end with is returned."""
    import os
    from pathlib import Path

    def make(how, root):
        def refuse(*args, **kwargs):
            target = args[1] if how == "rename-refused" else args[0]
            raise PermissionError(13, "Permission denied", str(target))

        if how == "below-a-file":
            (root / "runs").write_text("a file, not a folder")
            return "Not a directory"
        monkeypatch.setattr(os, "replace", refuse) if how == "rename-refused" else monkeypatch.setattr(
            Path, "mkdir", refuse
        )
        return "Permission denied"

    return make
