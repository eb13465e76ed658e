"""`train_vqgan` and `maskgit train-vqgan`: learning on tiny data, codebook usage reporting, one-line errors for bad
input, bit-identical resume, and SIGINT saving a resumable checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_cli import weights
from maskgit_cli.errors import MaskgitError
from maskgit_cli.training.state import Checkpointer
from maskgit_cli.vqgan.train import TrainVQGANConfig, train_vqgan
from maskgit_cli.weights import load_model, read_tensors

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**kw):
    base = dict(
        preset="tiny",
        epochs=None,
        max_steps=40,
        batch_size=8,
        lr=2e-3,
        warmup_steps=5,
        precision="bf16",
        device="cpu",
        eval_every=20,
        log_every=5,
        restart_every=10,
    )
    return TrainVQGANConfig(**{**base, **kw})


def test_loss_falls_and_usage_is_reported(tmp_path, make_images):
    make_images(tmp_path / "train", 32)
    make_images(tmp_path / "val", 8, seed=1)
    s = train_vqgan(tmp_path / "train", tmp_path / "val", tmp_path / "run", _cfg())
    assert s["status"] == "finished" and s["step"] == 40 and s["exit_code"] == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert {"l1", "l2", "commit", "lr", "img_per_s"} <= set(train[0])
    assert len(val) == 2 and val[-1]["psnr"] > val[0]["psnr"] > 5
    v = s["val"]
    assert 0 < v["usage"] <= 1 and 1 <= v["perplexity"] <= 64 and 0 < v["ssim"] <= 1
    assert v["usage"] > 0.5  # dead-code restarts keep the codebook alive
    model = load_model(s["weights"], "vqgan")  # the best checkpoint loads as a plain VQGAN file
    assert s["weights"].endswith("best.safetensors") and model.config.num_codebook_vectors == 64
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_without_validation_keeps_last_only(tmp_path, make_images):
    make_images(tmp_path / "train", 8)
    s = train_vqgan(tmp_path / "train", None, tmp_path / "run", _cfg(max_steps=3, batch_size=4))
    assert s["best"] is None and s["weights"].endswith("last.safetensors") and s["val"] == {}


def test_bad_input_errors(tmp_path, make_images):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskgitError, match="contains no images"):
        train_vqgan(tmp_path / "empty", None, tmp_path / "r1", _cfg())
    with pytest.raises(MaskgitError, match="no such folder"):
        train_vqgan(tmp_path / "missing", None, tmp_path / "r2", _cfg())
    make_images(tmp_path / "train", 4)
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "train" / "image_bad.png")
    with pytest.raises(MaskgitError, match=r"image_bad\.png: image is 48x32, expected 64x64"):
        train_vqgan(tmp_path / "train", None, tmp_path / "r3", _cfg())
    make_images(tmp_path / "few", 3)
    with pytest.raises(MaskgitError, match="fewer than one batch"):
        train_vqgan(tmp_path / "few", None, tmp_path / "r4", _cfg())
    with pytest.raises(MaskgitError, match="--preset huge"):
        _cfg(preset="huge")


def test_cli_stop_then_resume_by_run_folder(tmp_path, cli, make_images):
    make_images(tmp_path / "train", 8)
    args = ["--preset", "tiny", "--batch-size", "4", "--max-steps", "6", "--device", "cpu", "--eval-every", "3"]
    r = cli("train-vqgan", tmp_path / "train", "-o", tmp_path / "run", *args, "--stop-at", "3")
    assert r.exit_code == 0 and "stopped at step 3/6" in r.stdout, r.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["epochs"] is None and saved["max_steps"] == 6  # --max-steps alone sets the length
    r = cli("train-vqgan", "--resume", tmp_path / "run")
    assert r.exit_code == 0 and "finished at step 6/6" in r.stdout, r.output
    r = cli("train-vqgan", "--resume", tmp_path / "run", "-o", tmp_path / "other")
    assert r.exit_code == 1 and "name different runs" in r.stderr
    r = cli("train-vqgan", "-o", tmp_path / "x")
    assert r.exit_code == 1 and "give the training images" in r.stderr


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, make_images):
    root = tmp_path_factory.mktemp("shapes")
    make_images(root / "train", 24)
    make_images(root / "val", 8, seed=1)
    return root / "train", root / "val"


@pytest.mark.slow
def test_vqgan_resume_is_bit_identical(tmp_path, shapes):
    train, val = shapes

    def cfg(**kw):
        return TrainVQGANConfig(
            preset="tiny",
            epochs=None,
            max_steps=14,
            batch_size=4,
            precision="fp32",
            device="cpu",
            eval_every=4,
            log_every=2,
            restart_every=3,
            warmup_steps=2,
            gan_start=5,
            **kw,
        )

    a = train_vqgan(train, val, tmp_path / "a", cfg())
    b = train_vqgan(train, val, tmp_path / "b", cfg(stop_at=8))  # 6 batches per epoch: stops mid-epoch 2
    assert (a["status"], b["status"], b["step"]) == ("finished", "stopped", 8)
    c = train_vqgan(train, val, tmp_path / "b", cfg(), resume=True)
    assert c["status"] == "finished" and c["step"] == 14
    for name in ("last.safetensors", "best.safetensors", "state.safetensors"):
        ta, tb = read_tensors(tmp_path / "a" / name), read_tensors(tmp_path / "b" / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{name}: {k}"
    assert c["best_psnr"] == a["best_psnr"]
    with pytest.raises(MaskgitError, match="settings differ.*lr"):
        train_vqgan(train, val, tmp_path / "b", cfg(lr=1e-3), resume=True)
    model = weights.load_model(tmp_path / "b" / "best.safetensors", "vqgan")
    assert model.config.num_codebook_vectors == 64


@pytest.mark.slow
def test_cli_sigint_saves_and_exits_130(tmp_path, shapes):
    train, _ = shapes
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASKGIT_NO_PROGRESS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "maskgit_cli",
        "train-vqgan",
        str(train),
        "-o",
        str(out),
        "--preset",
        "tiny",
        "--max-steps",
        "100000",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--log-every",
        "1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            metrics = out / "metrics.jsonl"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("training did not start")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    step = Checkpointer(out / "state.safetensors").load()["loop"]["step"]
    assert step >= 3 and "resumable checkpoint" in err
    assert weights.load_model(out / "last.safetensors", "vqgan").config.num_codebook_vectors == 64


@pytest.mark.parametrize("how", ["below-a-file", "rename-refused", "mkdir-refused"])
def test_cli_unwritable_output_is_one_line_and_writes_nothing(tmp_path, cli, image_dir, unwritable, file_tree, how):
    ending = unwritable(how, tmp_path)
    before = file_tree(tmp_path)
    args = ["--preset", "tiny", "--batch-size", "2", "--max-steps", "2", "--device", "cpu"]
    r = cli("train-vqgan", image_dir, "-o", tmp_path / "runs" / "r", *args)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert lines[0].startswith(f"Error: {tmp_path / 'runs' / 'r'}")
    assert lines[0].endswith(ending)
    assert file_tree(tmp_path) == before


def test_stop_before_the_first_validation_leaves_a_best_vqgan(tmp_path, make_images):
    make_images(tmp_path / "train", 8)
    make_images(tmp_path / "val", 4, seed=1)
    cfg = dict(max_steps=4, batch_size=4, eval_every=4)
    s = train_vqgan(tmp_path / "train", tmp_path / "val", tmp_path / "run", _cfg(**cfg, stop_at=2))
    assert s["status"] == "stopped" and s["best"] == str(tmp_path / "run" / "best.safetensors")
    assert s["weights"] == str(tmp_path / "run" / "last.safetensors")  # no validation yet: the last model is named
    assert weights.read_metadata(s["best"])["val"] == "none yet"
    assert load_model(s["best"], "vqgan").config.num_codebook_vectors == 64
    s = train_vqgan(tmp_path / "train", tmp_path / "val", tmp_path / "run", _cfg(**cfg), resume=True)
    meta = weights.read_metadata(s["best"])
    assert s["status"] == "finished" and "val" not in meta and float(meta["val_psnr"]) == s["best_psnr"]
