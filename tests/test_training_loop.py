"""The shared training loop (`fit`): LR schedule, AdamW groups, EMA, epoch order, exact resume, signals, NaN stop.

The toy task and `fit_toy` come from conftest.py."""

import json
import signal

import pytest
import torch
import torch.nn as nn

from maskgit_cli.errors import MaskgitError
from maskgit_cli.training.optim import ModelEMA, WarmupCosine, adamw_param_groups, epoch_order
from maskgit_cli.training.state import Checkpointer
from maskgit_cli.weights import read_tensors


def test_schedule_param_groups_ema_and_order():
    s = WarmupCosine(1.0, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = adamw_param_groups(model, 0.1)
    opt = torch.optim.AdamW([decay, {**no_decay, "lr_scale": 0.5}])
    assert s.apply(opt, 60) == s(60) and [g["lr"] for g in opt.param_groups] == [s(60), 0.5 * s(60)]
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


def test_toy_resume_is_exact_and_metrics_written(tmp_path, fit_toy):
    ta, run_a, ra = fit_toy(tmp_path, "a")
    assert ra.status == "finished" and ra.step == 20 and ra.exit_code == 0
    tb, run_b, rb = fit_toy(tmp_path, "b", stop_at=7)  # mid-epoch (5 batches per epoch), between evals
    assert rb.status == "stopped" and rb.step == 7
    assert Checkpointer(run_b.state).load()["loop"]["step"] == 7
    tc, _, rc = fit_toy(tmp_path, "b", resume=True)
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


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_resumable_checkpoint(tmp_path, sig, code, toy_task, fit_toy):
    task = toy_task(total=20, signal_at=6)
    task.signal_at_kind = sig
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN under nohup/CI
    _, run, r = fit_toy(tmp_path, "a", task=task)
    assert r.status == "interrupted" and r.exit_code == code
    assert r.step == 7  # the step during which the signal arrived was finished, then saved
    assert Checkpointer(run.state).load()["loop"]["step"] == 7
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    ref, _, _ = fit_toy(tmp_path, "ref")
    resumed, _, r2 = fit_toy(tmp_path, "a", resume=True)
    assert r2.status == "finished"
    assert torch.equal(resumed.model.weight, ref.model.weight)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, toy_task, fit_toy):
    task = toy_task(total=20, nan_at=12)
    with pytest.raises(MaskgitError, match=r"loss is nan at step 13.*last good checkpoint \(step 10\)"):
        fit_toy(tmp_path, "a", task=task)
    state = Checkpointer(tmp_path / "a" / "state.safetensors").load()
    assert state["loop"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["task"]["model"].values())


def test_a_stop_before_the_first_validation_leaves_an_unvalidated_best(tmp_path, fit_toy, toy_task, capsys):
    from maskgit_cli.weights import read_metadata

    task = toy_task(total=20, signal_at=1)  # Ctrl-C during step 2, before the first validation (step 5)
    _, run, r = fit_toy(tmp_path, "a", task=task)
    assert r.status == "interrupted" and r.step == 2 and r.best is None
    meta = read_metadata(run.best)
    assert meta["val"] == "none yet" and meta["step"] == "2" and "val_mse" not in meta
    last = read_tensors(run.last)
    assert all(torch.equal(v, last[k]) for k, v in read_tensors(run.best).items())  # the current model
    assert r.summary(run)["weights"] == str(run.last)  # best.safetensors is no validated best yet: not reported
    _, _, r = fit_toy(tmp_path, "a", resume=True, stop_at=4)  # stopped again, still unvalidated
    assert read_metadata(run.best)["step"] == "4" and read_metadata(run.best)["val"] == "none yet"
    _, _, r = fit_toy(tmp_path, "a", resume=True)
    meta = read_metadata(run.best)  # the first validation replaced it
    assert r.status == "finished" and "val" not in meta and float(meta["val_mse"]) == r.best
    # stopped before anything was logged: no curves, and no warning about them
    _, run, r = fit_toy(tmp_path, "b", stop_at=1, log_every=10)
    assert r.status == "stopped" and run.best.is_file() and not run.curves.exists()
    assert "could not draw" not in capsys.readouterr().err
    # without validation there is no best at all (the run's weights are last.safetensors)
    _, run, r = fit_toy(tmp_path, "c", stop_at=2, best_metric=None)
    assert not run.best.exists() and r.summary(run)["weights"] == str(run.last)


@pytest.mark.parametrize("raised", ["OSError", "SafetensorError"])  # the latter is what safetensors raises
def test_a_full_disk_stops_with_one_error_and_keeps_the_last_checkpoint(tmp_path, fit_toy, monkeypatch, raised):
    from safetensors import SafetensorError

    from maskgit_cli import weights
    from maskgit_cli.training.run import SaveError

    real = weights.save_file

    def full_from_step_8(tensors, filename, metadata=None):
        if int((metadata or {}).get("step", 0)) >= 8:
            if raised == "OSError":
                raise OSError(28, "No space left on device", filename)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(weights, "save_file", full_from_step_8)
    run = tmp_path / "a"
    with pytest.raises(SaveError) as e:
        fit_toy(tmp_path, "a")  # checkpoints at 5 (fine) and 10 (disk full)
    message = str(e.value)
    assert isinstance(e.value, MaskgitError) and isinstance(e.value, OSError) and "\n" not in message
    assert message.startswith(f"{run}/") and "(No space left on device)" in message
    assert f"{run / 'state.safetensors'} still holds step 5 (continue with --resume)" in message
    assert Checkpointer(run / "state.safetensors").load()["loop"]["step"] == 5
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(weights, "save_file", real)
    resumed, _, r = fit_toy(tmp_path, "a", resume=True)  # the folder is free and the checkpoint resumes exactly
    ref, _, _ = fit_toy(tmp_path, "ref")
    assert r.status == "finished" and torch.equal(resumed.model.weight, ref.model.weight)


def test_epochs_count_from_one_in_the_log_metrics_and_summary(tmp_path, fit_toy, capsys):
    """40 items in batches of 8: steps 1-5 are epoch 1, 6-10 epoch 2; the log, metrics.jsonl and the summary agree."""
    import json

    _, run, r = fit_toy(tmp_path, "a", max_steps=10, eval_every=5, log_every=5)
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [(x["kind"], x["step"], x["epoch"]) for x in records] == [
        ("train", 5, 1), ("val", 5, 1), ("train", 10, 2), ("val", 10, 2)
    ]  # fmt: skip
    err = capsys.readouterr().err
    assert "step 5/10 epoch 1: val" in err and "step 10/10 epoch 2: val" in err
    assert r.summary(run)["epoch"] == 2


def test_a_deadline_stops_validated_and_resumes_exactly(tmp_path, fit_toy, toy_task, monkeypatch):
    from types import SimpleNamespace

    from maskgit_cli.training import loop
    from maskgit_cli.weights import read_metadata

    clock = [0.0]  # seconds on a fake clock: each training step takes 1 s, nothing else takes any
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    class Slow(toy_task):
        def train_step(self, indices, step):
            clock[0] += 1.0
            return super().train_step(indices, step)

    ref, run_ref, r_ref = fit_toy(tmp_path, "ref")
    with loop.deadline(clock[0] + 6.5):  # after step 6, one more step would end past it
        _, run, r = fit_toy(tmp_path, "a", task=Slow(total=20))
    assert (r.status, r.step, r.total_steps, r.exit_code) == ("out of time", 6, 20, 0)
    state = Checkpointer(run.state).load()["loop"]
    assert (state["step"], state["total_steps"]) == (6, 20)  # the schedule's length is the run's, not the deadline's
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [5, 6]  # a final validation at the stop
    assert read_metadata(run.best)["step"] in ("5", "6") and r.best_step in (5, 6)
    resumed, _, r2 = fit_toy(tmp_path, "a", resume=True)  # no deadline: on to step 20
    assert r2.status == "finished" and r2.step == 20
    assert torch.equal(resumed.model.weight, ref.model.weight) and torch.equal(resumed.model.bias, ref.model.bias)
    last, last_ref = read_tensors(run.last), read_tensors(run_ref.last)
    assert all(torch.equal(last[k], last_ref[k]) for k in last_ref)
    with loop.deadline(clock[0] - 1.0):  # already past: one step still, so that there is a model
        _, run, r = fit_toy(tmp_path, "b", task=Slow(total=20))
    assert (r.status, r.step) == ("out of time", 1) and run.best.is_file() and run.last.is_file()
