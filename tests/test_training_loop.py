"""The shared training loop: checkpoints without pickle, exact resume, signals, NaN stop, crash-safe saves."""

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
import torch.nn as nn
from safetensors import safe_open

from maskgit_cli import weights
from maskgit_cli.errors import MaskgitError
from maskgit_cli.training.loop import (
    LoopConfig,
    ModelEMA,
    WarmupCosine,
    adamw_param_groups,
    epoch_order,
    fit,
    make_adamw,
    set_lr,
)
from maskgit_cli.training.run import RunDir
from maskgit_cli.training.state import Checkpointer, capture_rng, restore_rng
from maskgit_cli.weights import read_tensors, save_tensors

from .conftest import make_images

ROOT = Path(__file__).resolve().parents[1]


class ToyTask:
    """Linear regression with noise from the global torch RNG (so RNG restore matters)."""

    def __init__(self, n=40, total=20, nan_at=None, signal_at=None):
        torch.manual_seed(0)
        self.x = torch.randn(n, 4)
        self.y = self.x @ torch.tensor([1.0, -2.0, 3.0, 0.5]) + 0.1
        self.model = nn.Linear(4, 1)
        self.opt = make_adamw(self.model, 0.05, weight_decay=0.01)
        self.schedule = WarmupCosine(0.05, total, warmup_steps=3)
        self.nan_at, self.signal_at = nan_at, signal_at

    def train_step(self, indices, step):
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
        save_tensors(path, self.model.state_dict(), {"kind": "toy", **metadata})


def _fit(tmp_path, name="run", resume=False, task=None, **loop):
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


def test_pack_round_trip_without_pickle(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt = make_adamw(model, 1e-3, weight_decay=0.1)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    rng = capture_rng()
    state = {
        "opt": opt.state_dict(),
        "rng": rng,
        "tuple": (1, 2.5, None, "x"),
        "ints": {3: [1, 2], "a": True},
        "np": np.arange(5, dtype=np.uint32),
        "inf": float("inf"),
        "g": torch.Generator().manual_seed(3).get_state(),
    }
    ck = Checkpointer(tmp_path / "state.safetensors")
    ck.save(state, step=7)
    with safe_open(str(ck.path), framework="pt") as f:  # a plain safetensors file: no pickle anywhere
        meta = f.metadata()
    assert meta["kind"] == "training-state" and meta["step"] == "7"
    json.loads(meta["structure"])
    back = ck.load()
    assert back["tuple"] == (1, 2.5, None, "x") and back["ints"] == {3: [1, 2], "a": True}
    assert back["np"].dtype == np.uint32 and (back["np"] == np.arange(5)).all() and back["inf"] == float("inf")
    assert back["opt"]["param_groups"] == opt.state_dict()["param_groups"]  # tuples (betas) stay tuples
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(back["opt"]["state"][k][name], t)
    opt2 = make_adamw(model, 1e-3, weight_decay=0.1)
    opt2.load_state_dict(back["opt"])  # the optimizer accepts it
    torch.rand(3)
    restore_rng(back["rng"])
    a = (torch.rand(3), np.random.rand(), __import__("random").random())
    restore_rng(rng)
    assert torch.equal(a[0], torch.rand(3)) and a[1] == np.random.rand() and a[2] == __import__("random").random()
    with pytest.raises(TypeError, match="without pickle"):
        ck.save({"bad": object()}, step=1)


def test_schedule_param_groups_ema_and_order():
    s = WarmupCosine(1.0, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = adamw_param_groups(model, 0.1)
    assert {p.ndim for p in decay["params"]} == {2} and len(decay["params"]) == 2
    assert {p.ndim for p in no_decay["params"]} == {1} and no_decay["weight_decay"] == 0
    ema = ModelEMA(model, 0.5)
    with torch.no_grad():
        model[1].weight.add_(1.0)
    ema.update(model)
    avg = ema.averaged_state(model)
    assert torch.allclose(avg["1.weight"], model[1].weight - 0.5)
    ema2 = ModelEMA(model, 0.9)
    ema2.load_state_dict(ema.state_dict())
    assert ema2.decay == 0.5 and torch.equal(ema2.shadow["1.weight"], ema.shadow["1.weight"])
    assert torch.equal(epoch_order(1, 3, 50), epoch_order(1, 3, 50))
    assert not torch.equal(epoch_order(1, 3, 50), epoch_order(1, 4, 50))
    assert not torch.equal(epoch_order(1, 3, 50), epoch_order(2, 3, 50))


def test_toy_resume_is_exact_and_metrics_written(tmp_path):
    ta, run_a, ra = _fit(tmp_path, "a")
    assert ra.status == "finished" and ra.step == 20 and ra.exit_code == 0
    tb, run_b, rb = _fit(tmp_path, "b", stop_at=7)  # mid-epoch (5 batches per epoch), between evals
    assert rb.status == "stopped" and rb.step == 7
    assert Checkpointer(run_b.state).load()["loop"]["step"] == 7
    tc, _, rc = _fit(tmp_path, "b", resume=True)
    assert rc.status == "finished" and rc.step == 20
    for k, v in ta.model.state_dict().items():
        assert torch.equal(v, tc.model.state_dict()[k]), k
    for name in ("last.safetensors", "best.safetensors"):
        a, b = read_tensors(run_a.path / name), read_tensors(run_b.path / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics.jsonl: one JSON object per line, same steps as the uninterrupted run; curves drawn
    rec_a = [json.loads(line) for line in run_a.metrics.read_text().splitlines()]
    rec_b = [json.loads(line) for line in run_b.metrics.read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in rec_a] == [(r["kind"], r["step"]) for r in rec_b]
    assert {r["kind"] for r in rec_a} == {"train", "val"}
    assert run_a.curves.stat().st_size > 1000 and (run_a.path / "config.json").is_file()


def test_run_dir_guards(tmp_path):
    _fit(tmp_path, "a", max_steps=4)
    with pytest.raises(MaskgitError, match="already holds a training run"):
        RunDir(tmp_path / "a").start({"toy": 1}, resume=False)
    with pytest.raises(MaskgitError, match="nothing to resume"):
        RunDir(tmp_path / "new").start({"toy": 1}, resume=True)
    with pytest.raises(MaskgitError, match=r"settings differ.*toy: 1 \(saved\) vs 2 \(now\)"):
        RunDir(tmp_path / "a").start({"toy": 2}, resume=True)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_resumable_checkpoint(tmp_path, sig, code):
    task = ToyTask(total=20, signal_at=6)
    task.signal_at_kind = sig
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN under nohup/CI
    _, run, r = _fit(tmp_path, "a", task=task)
    assert r.status == "interrupted" and r.exit_code == code
    assert r.step == 7  # the step during which the signal arrived was finished, then saved
    assert Checkpointer(run.state).load()["loop"]["step"] == 7
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    ref, _, _ = _fit(tmp_path, "ref")
    resumed, _, r2 = _fit(tmp_path, "a", resume=True)
    assert r2.status == "finished"
    assert torch.equal(resumed.model.weight, ref.model.weight)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    task = ToyTask(total=20, nan_at=12)
    with pytest.raises(MaskgitError, match=r"loss is nan at step 13.*last good checkpoint \(step 10\)"):
        _fit(tmp_path, "a", task=task)
    state = Checkpointer(tmp_path / "a" / "state.safetensors").load()
    assert state["loop"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["task"]["model"].values())


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _, run, _ = _fit(tmp_path, "a", max_steps=10)
    before = run.state.read_bytes()
    before_last = run.last.read_bytes()
    real_save = weights.save_file

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        _fit(tmp_path, "b", max_steps=10)
    with pytest.raises(OSError, match="disk full"):
        Checkpointer(run.state).save({"x": torch.zeros(3)}, step=99)
    monkeypatch.setattr(weights, "save_file", real_save)
    assert run.state.read_bytes() == before and run.last.read_bytes() == before_last
    assert Checkpointer(run.state).load()["loop"]["step"] == 10
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]  # no temporary files left


# -- the real trainer: VQGAN resume equality ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_images(root / "train", 24)
    make_images(root / "val", 8, seed=1)
    return root / "train", root / "val"


@pytest.mark.slow
def test_vqgan_resume_is_bit_identical(tmp_path, shapes):
    from maskgit_cli.vqgan.train import TrainVQGANConfig, train_vqgan

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
