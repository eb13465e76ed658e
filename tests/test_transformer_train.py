"""`train_transformer` and `maskgit train`: learning, exact resume, signals, NaN stop, cache mismatches, TOML config,
DDP."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.train import TrainConfig, train_transformer
from maskgit_cli.vqgan.tokens import save_token_cache
from maskgit_cli.weights import load_model, read_tensors

CODES = 16


def make_cache(path, n=64, seed=0, sha="a" * 64, grid=16, codes=CODES):
    """Learnable token grids: a left and a right half, each of one random code (context predicts the rest)."""
    g = torch.Generator().manual_seed(seed)
    halves = torch.randint(0, codes, (n, 1, 2), generator=g)
    tokens = halves.repeat_interleave(grid // 2, dim=2).expand(n, grid, grid).contiguous()
    save_token_cache(path, tokens, [f"image_{i:03d}.png" for i in range(n)], sha, "{}", grid * 4, codes)
    return path


@pytest.fixture
def caches(tmp_path):
    return make_cache(tmp_path / "train.tokens"), make_cache(tmp_path / "val.tokens", n=32, seed=1)


def cfg(**kw):
    base = dict(
        preset="tiny",
        batch_size=8,
        max_steps=12,
        epochs=None,
        lr=3e-3,
        warmup_steps=2,
        device="cpu",
        eval_every=6,
        log_every=2,
    )
    return TrainConfig(**{**base, **kw})


def test_loss_falls_and_files_are_written(caches, tmp_path):
    train, val = caches
    s = train_transformer(train, val, tmp_path / "run", cfg(max_steps=100, eval_every=50, lr=1e-2))
    assert s["status"] == "finished" and s["step"] == 100
    run = tmp_path / "run"
    for name in (
        "last.safetensors",
        "best.safetensors",
        "state.safetensors",
        "metrics.jsonl",
        "curves.png",
        "config.json",
    ):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert train_losses[-1] < 0.85 * train_losses[0]
    vals = [r for r in records if r["kind"] == "val"]
    assert len(vals) == 2 and vals[-1]["acc"] > vals[0]["acc"] and vals[-1]["acc"] > 3 / CODES  # chance: 1/16
    model = load_model(run / "best.safetensors", "transformer")
    assert model.config.num_codebook_vectors == CODES and model.config.num_image_tokens == 256


@pytest.mark.parametrize("precision,accum", [("bf16", 1), ("fp32", 1), ("bf16", 2)])
def test_resume_is_bit_identical(caches, tmp_path, precision, accum):
    """Also with --accum-grad 2, as `make weights` trains on a CPU (two micro-batches per step)."""
    train, val = caches
    full = train_transformer(train, val, tmp_path / "a", cfg(precision=precision, ema=0.9, accum_grad=accum))
    first = train_transformer(
        train, val, tmp_path / "b", cfg(precision=precision, ema=0.9, accum_grad=accum, stop_at=5)
    )
    assert first["status"] == "stopped" and first["step"] == 5
    second = train_transformer(
        train, val, tmp_path / "b", cfg(precision=precision, ema=0.9, accum_grad=accum), resume=True
    )
    assert second["status"] == "finished" and full["step"] == second["step"] == 12
    a, b = read_tensors(tmp_path / "a" / "last.safetensors"), read_tensors(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = read_tensors(tmp_path / "a" / "state.safetensors"), read_tensors(tmp_path / "b" / "state.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa if "optimizer" in k or "mask_gen" in k)
    # metrics.jsonl reads as one run
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x)["step"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == ref


def test_resume_with_other_settings_is_refused(caches, tmp_path):
    train, val = caches
    train_transformer(train, val, tmp_path / "r", cfg(stop_at=3))
    with pytest.raises(MaskgitError, match="settings differ"):
        train_transformer(train, val, tmp_path / "r", cfg(lr=1e-3), resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(caches, tmp_path, monkeypatch):
    train, val = caches
    import maskgit_cli.transformer.train as tt

    real = tt.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] > 9 else out

    monkeypatch.setattr(tt.F, "cross_entropy", poisoned)
    with pytest.raises(MaskgitError, match="loss is nan at step .*last good checkpoint \\(step 9\\)"):
        train_transformer(train, None, tmp_path / "n", cfg(eval_every=0, save_every=3, max_steps=12))
    state = read_tensors(tmp_path / "n" / "state.safetensors")
    assert all(torch.isfinite(v).all() for k, v in state.items() if v.is_floating_point())
    from maskgit_cli.weights import read_metadata

    assert read_metadata(tmp_path / "n" / "state.safetensors")["step"] == "9"


def test_cache_mismatches(tmp_path):
    train = make_cache(tmp_path / "t.tokens")
    other = make_cache(tmp_path / "o.tokens", sha="b" * 64)
    with pytest.raises(MaskgitError, match="tokens were made by VQGAN bbbbbbbbbbbb, but this VQGAN is aaaaaaaaaaaa"):
        train_transformer(train, other, tmp_path / "r", cfg())
    grid = make_cache(tmp_path / "g.tokens", grid=8)
    with pytest.raises(MaskgitError, match="grid"):
        train_transformer(train, grid, tmp_path / "r", cfg())
    (tmp_path / "masks").mkdir()
    with pytest.raises(MaskgitError, match="no images|0 masks"):
        train_transformer(
            train, make_cache(tmp_path / "v.tokens", n=4), tmp_path / "r", cfg(), val_masks_dir=tmp_path / "masks"
        )


def test_val_masks_report_inpainting_accuracy(caches, tmp_path):
    from PIL import Image

    train, _ = caches
    val = make_cache(tmp_path / "v.tokens", n=3, seed=2)
    (tmp_path / "m").mkdir()
    for i in range(3):
        m = Image.new("L", (64, 64), 255)
        m.paste(0, (16, 16, 40, 40))
        m.save(tmp_path / "m" / f"mask_{i:03d}.png")
    s = train_transformer(train, val, tmp_path / "r", cfg(max_steps=4, eval_every=4), val_masks_dir=tmp_path / "m")
    assert "inpaint_acc" in s["val"] and s["best_metric"] == "inpaint_acc"


def test_cli_toml_config_and_cli_wins(caches, tmp_path, cli):
    train, val = caches
    (tmp_path / "c.toml").write_text('[train]\npreset = "tiny"\nmax_steps = 4\nbatch_size = 8\nlr = 0.5\n')
    r = cli(
        "train",
        train,
        "--val",
        val,
        "-o",
        tmp_path / "run",
        "--config",
        tmp_path / "c.toml",
        "--lr",
        "0.001",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--shaped-masks",
        "0.25",
        "--json",
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["lr"] == 0.001 and saved["max_steps"] == 4 and saved["preset"] == "tiny"
    assert saved["shaped_masks"] == 0.25
    assert json.loads(r.stdout)["status"] == "finished"
    (tmp_path / "bad.toml").write_text("lrr = 1\n")
    r = cli("train", train, "-o", tmp_path / "run2", "--config", tmp_path / "bad.toml")
    assert r.exit_code == 1 and "unknown settings ['lrr']" in r.stderr
    r = cli("train", train, "-o", tmp_path / "run3", "--shaped-masks", "1.5")
    assert r.exit_code == 2 and "--shaped-masks" in r.stderr and not (tmp_path / "run3").exists()


def test_cli_stop_and_resume_from_the_run_folder(caches, tmp_path, cli):
    train, val = caches
    args = ["--preset", "tiny", "--batch-size", "8", "--max-steps", "6", "--device", "cpu"]
    r = cli("train", train, "--val", val, "-o", tmp_path / "run", *args, "--stop-at", "3")
    assert r.exit_code == 0 and "stopped at step 3/6" in r.stdout
    r = cli("train", "--resume", tmp_path / "run")
    assert r.exit_code == 0 and "finished at step 6/6" in r.stdout, r.output
    r = cli("train", "--resume", tmp_path / "nothing")
    assert r.exit_code == 1 and "not a training run" in r.stderr
    r = cli("train", train, "-o", tmp_path / "run", *args)
    assert r.exit_code == 1 and "already holds a training run" in r.stderr


@pytest.mark.slow
def test_sigint_saves_and_exits_130_then_resumes(caches, tmp_path):
    train, val = caches
    cmd = [
        sys.executable,
        "-m",
        "maskgit_cli",
        "train",
        str(train),
        "-o",
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--batch-size",
        "8",
        "--max-steps",
        "100000",
        "--device",
        "cpu",
        "--eval-every",
        "1000000",
    ]
    env = {**os.environ, "MASKGIT_NO_PROGRESS": "1"}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stderr.readline()
        if line.startswith("step "):  # training is under way
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "SIGINT" in err and (tmp_path / "run" / "state.safetensors").exists()
    from maskgit_cli.weights import read_metadata

    step = int(read_metadata(tmp_path / "run" / "state.safetensors")["step"])
    assert step >= 10


@pytest.mark.slow
def test_torchrun_two_cpu_processes(caches, tmp_path):
    train, val = caches
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "maskgit_cli",
        "train",
        str(train),
        "--val",
        str(val),
        "-o",
        str(tmp_path / "ddp"),
        "--preset",
        "tiny",
        "--batch-size",
        "8",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "MASKGIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "ddp"
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [3, 6]  # rank 0 alone logs
    model = load_model(run / "last.safetensors", "transformer")
    state = read_tensors(run / "state.safetensors")
    assert all(torch.equal(v, state[f"task/model/{k}"]) for k, v in model.state_dict().items())


def test_resume_may_change_the_run_length(caches, tmp_path, capsys):
    train, val = caches
    train_transformer(train, val, tmp_path / "r", cfg(stop_at=4))
    s = train_transformer(train, val, tmp_path / "r", cfg(max_steps=8), resume=True)
    assert s["status"] == "finished" and s["step"] == s["total_steps"] == 8
    assert "run length changed from 12 to 8 steps" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["below-a-file", "rename-refused", "mkdir-refused"])
def test_cli_unwritable_output_is_one_line_and_writes_nothing(caches, tmp_path, cli, unwritable, file_tree, how):
    train, _ = caches
    ending = unwritable(how, tmp_path)
    before = file_tree(tmp_path)
    args = ["--preset", "tiny", "--batch-size", "8", "--max-steps", "2", "--device", "cpu"]
    r = cli("train", train, "-o", tmp_path / "runs" / "r", *args)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert lines[0].startswith(f"Error: {tmp_path / 'runs' / 'r'}")
    assert lines[0].endswith(ending)
    assert file_tree(tmp_path) == before


def test_cli_full_disk_is_one_line_and_the_last_checkpoint_resumes(caches, tmp_path, cli, monkeypatch):
    from maskgit_cli import weights
    from maskgit_cli.weights import read_metadata

    train, val = caches
    real = weights.save_file

    def full_from_step_4(tensors, filename, metadata=None):
        if int((metadata or {}).get("step", 0)) >= 4:
            raise OSError(28, "No space left on device", filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(weights, "save_file", full_from_step_4)
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--batch-size", "8", "--max-steps", "6", "--eval-every", "3", "--device", "cpu"]
    r = cli("train", train, "--val", val, "-o", run, *args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert errors == r.stderr.strip().splitlines()[-1:]  # one error line, the last one
    assert errors[0].startswith(f"Error: {run}/") and "No space left on device" in errors[0]
    assert f"{run / 'state.safetensors'} still holds step 3" in errors[0]
    assert read_metadata(run / "state.safetensors")["step"] == "3"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(weights, "save_file", real)
    r = cli("train", "--resume", run)
    assert r.exit_code == 0 and "finished at step 6/6" in r.stdout, r.output


def test_cli_early_stop_leaves_a_best_that_inpaint_uses(cli, image_dir, tiny_vqgan_file, tmp_path):
    from maskgit_cli.weights import read_metadata

    cache = tmp_path / "t.tokens"
    assert cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", cache, "--device", "cpu").exit_code == 0
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--batch-size", "2", "--max-steps", "6", "--eval-every", "3", "--device", "cpu"]
    r = cli("train", cache, "--val", cache, "-o", run, *args, "--stop-at", "1")  # as Ctrl-C does
    assert r.exit_code == 0 and "stopped at step 1/6" in r.stdout, r.output
    assert f"weights: {run / 'last.safetensors'}" in r.stdout and "could not draw" not in r.stderr  # none validated
    assert read_metadata(run / "best.safetensors")["val"] == "none yet"
    out = tmp_path / "out"
    r = cli(
        "inpaint",
        "--images",
        image_dir,
        "--mask-kind",
        "box",
        "--transformer",
        run / "best.safetensors",
        "--vqgan",
        tiny_vqgan_file,
        "-o",
        out,
        "--device",
        "cpu",
        "--grids",
        "0",
    )
    assert r.exit_code == 0, r.output
    assert len(list((out / "images").iterdir())) == 6


def make_copies_cache(path, n=64, k=2, seed=0):
    """make_cache's grids with k masked copies: holes are a random 4x4 block of tokens, and the context around
    them is corrupted (some tokens replaced), as a VQGAN with image-wide operations corrupts it."""
    from maskgit_cli.vqgan.tokens import load_token_cache

    make_cache(path, n=n, seed=seed)
    clean = load_token_cache(path).tokens
    g = torch.Generator().manual_seed(seed + 100)
    holes = torch.zeros(n, k, 16, 16, dtype=torch.bool)
    for i in range(n):
        for j in range(k):
            y, x = torch.randint(0, 12, (2,), generator=g).tolist()
            holes[i, j, y : y + 4, x : x + 4] = True
    noise = torch.randint(0, CODES, (n, k, 16, 16), generator=g)
    corrupt = torch.rand(n, k, 16, 16, generator=g) < 0.2
    masked = torch.where(corrupt, noise, clean[:, None].expand(-1, k, -1, -1))
    files = [f"image_{i:03d}.png" for i in range(n)]
    save_token_cache(path, clean, files, "a" * 64, "{}", 64, CODES, masked=(masked, holes), fidelity=0.8)
    return path


def test_masked_copies_training_resumes_exactly_and_is_recorded(tmp_path):
    train, val = make_copies_cache(tmp_path / "train.tokens"), make_copies_cache(tmp_path / "val.tokens", 32, 1, 1)
    full = train_transformer(train, val, tmp_path / "a", cfg(copies_ratio=0.5))
    train_transformer(train, val, tmp_path / "b", cfg(copies_ratio=0.5, stop_at=5))
    second = train_transformer(train, val, tmp_path / "b", cfg(copies_ratio=0.5), resume=True)
    assert full["step"] == second["step"] == 12 and "copies_acc" in full["val"]
    a, b = read_tensors(tmp_path / "a" / "last.safetensors"), read_tensors(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    from maskgit_cli.weights import read_metadata

    objective = json.loads(read_metadata(tmp_path / "a" / "best.safetensors")["objective"])
    assert objective == {"mask_ratio": "cosine", "loss_on": "masked", "copies_ratio": 0.5, "masked_copies": 2,
                         "dilate": 1, "shaped_masks": 0.0}  # fmt: skip
    # the copies change what is learned: not the same weights as without them
    plain = train_transformer(train, val, tmp_path / "c", cfg())
    c = read_tensors(tmp_path / "c" / "last.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a) and plain["step"] == 12
    assert json.loads(read_metadata(tmp_path / "c" / "best.safetensors")["objective"])["copies_ratio"] == 0.0


def test_copies_ratio_needs_a_cache_with_copies(caches, tmp_path):
    train, val = caches
    with pytest.raises(MaskgitError, match="holds no masked copies; make it with `maskgit tokenize ... --masked-co"):
        train_transformer(train, val, tmp_path / "r", cfg(copies_ratio=0.3))
    assert not (tmp_path / "r").exists()
    with pytest.raises(MaskgitError, match=r"--copies-ratio 1.5: expected a share in \[0, 1\]"):
        cfg(copies_ratio=1.5)


@pytest.mark.parametrize("loss_on", ["masked", "all"])
def test_loss_equals_the_full_logits_reference(loss_on):
    """With ``loss_on`` masked, _loss runs the head on the masked positions only (model.forward's ``where``):
    same loss and accuracy as the cross-entropy of the full logits at those positions; with ``all``, the loss is
    over every position, the accuracy still over the masked ones."""
    import dataclasses

    import torch.nn.functional as F

    from maskgit_cli.bench import make_train_task
    from maskgit_cli.transformer.model import forbid_mask_token, mask_tokens

    task = make_train_task("tiny", "cpu", 4, "fp32")
    task.cfg = dataclasses.replace(task.cfg, loss_on=loss_on)
    model = task.model.eval()
    tokens = task.train_tokens[:4]
    masked = torch.rand(4, 256, generator=torch.Generator().manual_seed(3)) < 0.6
    loss, correct = task._loss(tokens, masked, model)
    with torch.no_grad():
        full = model(mask_tokens(tokens, masked, model.config.mask_token_id))
    where = masked if loss_on == "masked" else torch.ones_like(masked)
    ref = F.cross_entropy(full[where], tokens[where], label_smoothing=task.cfg.label_smoothing)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)
    ref_correct = (forbid_mask_token(full, model.config.mask_token_id).argmax(-1) == tokens)[masked].sum()
    assert int(correct) == int(ref_correct)


def test_shaped_masks_training_resumes_exactly_and_is_recorded(caches, tmp_path):
    train, val = caches
    full = train_transformer(train, val, tmp_path / "a", cfg(shaped_masks=0.5))
    train_transformer(train, val, tmp_path / "b", cfg(shaped_masks=0.5, stop_at=5))
    second = train_transformer(train, val, tmp_path / "b", cfg(shaped_masks=0.5), resume=True)
    assert full["step"] == second["step"] == 12
    a, b = read_tensors(tmp_path / "a" / "last.safetensors"), read_tensors(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = read_tensors(tmp_path / "a" / "state.safetensors"), read_tensors(tmp_path / "b" / "state.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa if "mask_gen" in k)
    from maskgit_cli.weights import read_metadata

    objective = json.loads(read_metadata(tmp_path / "a" / "best.safetensors")["objective"])
    assert objective["shaped_masks"] == 0.5
    # validation reports the accuracy under each kind of hole users draw
    assert {"stroke_acc", "box_acc", "half_acc", "outpaint_acc"} <= full["val"].keys()
    # the shapes change what is learned: not the same weights as the random masks alone
    train_transformer(train, val, tmp_path / "c", cfg())
    c = read_tensors(tmp_path / "c" / "last.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(MaskgitError, match=r"--shaped-masks 1.5: expected a share in \[0, 1\]"):
        cfg(shaped_masks=1.5)


def _task(caches, **kw):
    from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
    from maskgit_cli.transformer.train import TransformerTask
    from maskgit_cli.vqgan.tokens import load_token_cache

    train, val = (load_token_cache(p) for p in caches)
    model = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=CODES))
    return TransformerTask(cfg(**kw), model, train, val, None, torch.device("cpu"), total_steps=12)


def test_no_shaped_masks_draws_the_papers_masks_as_before(caches):
    """The default (0) draws exactly what training drew before shaped masks existed, and nothing more."""
    from maskgit_cli.schedules import training_mask
    from maskgit_cli.training.optim import seeded_generator

    task = _task(caches)
    assert task.cfg.shaped_masks == TrainConfig().shaped_masks == 0
    before = seeded_generator(task.cfg.seed, 0x3A5C, 0)
    for _ in range(3):
        assert torch.equal(task._training_mask(8), training_mask("cosine", 8, 256, generator=before))
    assert torch.equal(task.mask_gen.get_state(), before.get_state())


def _is_rectangle(mask: torch.Tensor) -> bool:
    """Whether the True positions of a (16,16) mask fill their bounding box."""
    ys, xs = mask.nonzero(as_tuple=True)
    return len(ys) > 0 and int(mask.sum()) == (int(ys.max() - ys.min()) + 1) * (int(xs.max() - xs.min()) + 1)


def _boxy(mask: torch.Tensor) -> bool:
    """Whether a (16,16) mask, neither empty nor full, is a rectangle or all but a rectangle."""
    return 0 < int(mask.sum()) < mask.numel() and (_is_rectangle(mask) or _is_rectangle(~mask))


def test_shaped_masks_are_holes_users_draw(caches):
    """A share of 1: every grid masks a generated hole, three kinds in four a rectangle (box, half) or all but one
    (outpaint); the random masks almost never. Validation's masks of each kind are those holes, at every run."""
    shaped = _task(caches, shaped_masks=1.0, dilate=0)._training_mask(64).view(64, 16, 16)
    plain = _task(caches, dilate=0)._training_mask(64).view(64, 16, 16)
    assert 0.5 < sum(_boxy(m) for m in shaped) / 64 < 0.95
    assert not any(_boxy(m) for m in plain)
    task = _task(caches, dilate=0)
    assert (task.val_kinds["half"].sum(1) == 128).all()  # one half of the 16x16 tokens
    assert all(_is_rectangle(m) for m in task.val_kinds["box"].view(-1, 16, 16))
    assert all(torch.equal(task.val_kinds[k], _task(caches, dilate=0).val_kinds[k]) for k in task.val_kinds)
    assert (_task(caches, dilate=1).val_kinds["half"].sum(1) == 9 * 16).all()  # one ring more
