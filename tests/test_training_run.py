"""Run folders: a new run never overwrites another, resuming needs a run, and resumed settings must match."""

from pathlib import Path

import pytest

from maskgit_cli.errors import MaskgitError, OptionError
from maskgit_cli.training.run import RunDir


def test_run_dir_guards(tmp_path, fit_toy):
    fit_toy(tmp_path, "a", max_steps=4)
    with pytest.raises(MaskgitError, match="already holds a training run"):
        RunDir(tmp_path / "a").start({"toy": 1}, resume=False)
    with pytest.raises(MaskgitError, match="nothing to resume"):
        RunDir(tmp_path / "new").start({"toy": 1}, resume=True)
    with pytest.raises(MaskgitError, match=r"settings differ.*toy: 1 \(saved\) vs 2 \(now\)"):
        RunDir(tmp_path / "a").start({"toy": 2}, resume=True)


def test_resolve_run_merges_defaults_toml_and_options(tmp_path):
    from maskgit_cli.training.run import resolve_run
    from maskgit_cli.transformer.train import TrainConfig

    toml = tmp_path / "cfg.toml"
    toml.write_text("[train]\nlr = 0.001\nbatch_size = 8\nmax_steps = 30\n")
    run = resolve_run(
        TrainConfig, "train", {"batch_size": 16}, output=tmp_path / "r", data={"train": "t.tokens"}, toml=toml
    )
    assert (run.config.lr, run.config.batch_size, run.config.max_steps) == (0.001, 16, 30)
    assert run.config.epochs is None  # max_steps alone sets the length
    assert run.output == tmp_path / "r" and run.data == {"train": Path("t.tokens")}
    assert not run.resume
    toml.write_text("lr = 0.001\nbogus = 1\n")
    with pytest.raises(MaskgitError, match=r"--config .*cfg.toml: unknown settings \['bogus'\]"):
        resolve_run(TrainConfig, "train", {}, output=tmp_path / "r", data={}, toml=toml)
    with pytest.raises(MaskgitError, match="give the run folder with -o"):
        resolve_run(TrainConfig, "train", {}, output=None, data={})
    for missing, message in ((tmp_path / "none.toml", "no such file"), (tmp_path, "is a folder, expected a TOML file")):
        with pytest.raises(MaskgitError, match=f"^--config {missing}: {message}$"):
            resolve_run(TrainConfig, "train", {}, output=tmp_path / "r", data={}, toml=missing)


def test_resolve_run_takes_the_saved_run_and_refuses_another_trainers_run(tmp_path):
    import json

    from maskgit_cli.training.run import resolve_run
    from maskgit_cli.transformer.train import TrainConfig
    from maskgit_cli.vqgan.train import TrainVQGANConfig

    run = tmp_path / "run"
    run.mkdir()
    saved = {
        "trainer": "train",
        "train": {"lr": 0.002, "max_steps": 50, "epochs": None, "stop_at": 7},
        "data": {"train": "a.tokens", "val": None},
    }
    (run / "config.json").write_text(json.dumps(saved))
    r = resolve_run(TrainConfig, "train", {"max_steps": 80}, output=None, resume=run, data={"train": None, "val": None})
    assert r.resume and r.output == run and r.config.lr == 0.002 and r.config.max_steps == 80
    assert r.config.stop_at is None  # never inherited
    assert r.data == {"train": Path("a.tokens"), "val": None}
    with pytest.raises(
        MaskgitError, match=r"--resume .*run: is a `maskgit train` run, not a `maskgit train-vqgan` run"
    ):
        resolve_run(TrainVQGANConfig, "train-vqgan", {}, output=None, resume=run, data={"train_dir": None})
    with pytest.raises(MaskgitError, match="name different runs"):
        resolve_run(TrainConfig, "train", {}, output=tmp_path / "other", resume=run, data={})
    with pytest.raises(MaskgitError, match="not a training run"):
        resolve_run(TrainConfig, "train", {}, output=None, resume=tmp_path, data={})


# ---------------------------------------------------------------------------------------------------------
# One training per run folder: a lock held from start() until fit() returns

HOLD = """
import sys, time
from maskgit_cli.training.run import RunDir
RunDir(sys.argv[1]).start({"toy": 1}, resume=False)
print("locked", flush=True)
time.sleep(120)
"""

PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("held")
"""


def lock_is_free(run: Path) -> bool:
    """Whether another process could take the run folder's lock now (no lock file: a run that ended cleanly)."""
    import subprocess
    import sys

    if not (run / ".lock").exists():
        return True

    out = subprocess.run([sys.executable, "-c", PROBE, str(run / ".lock")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "free"


@pytest.fixture
def holder(tmp_path):
    """A second process that started the run folder ``tmp_path/run`` and holds it (its Popen)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_training_into_a_run_folder_in_use_is_refused(tmp_path, holder, cli, image_dir, fit_toy):
    run = tmp_path / "run"
    assert (run / ".lock").read_text().strip() == str(holder.pid)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    message = f"{run} is in use by another training (pid {holder.pid}); wait for it or choose another -o"
    for resume in (False, True):
        with pytest.raises(MaskgitError) as e:
            RunDir(run).start({"toy": 1}, resume=resume)
        assert str(e.value) == message
    with pytest.raises(MaskgitError, match="is in use by another training"):
        fit_toy(tmp_path, "run", max_steps=4)
    args = ["--preset", "tiny", "--batch-size", "2", "--max-steps", "2", "--device", "cpu"]
    r = cli("train-vqgan", image_dir, "-o", run, *args)
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [f"Error: {message}"], r.output
    assert "Traceback" not in r.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing of the holder's run touched
    holder.kill()
    holder.wait()
    assert lock_is_free(run)
    _, _, result = fit_toy(tmp_path, "run", max_steps=4)  # the holder is gone: the folder is free again
    assert result.status == "finished"


def test_the_lock_is_held_while_training_and_released_however_fit_ends(tmp_path, fit_toy, toy_task, monkeypatch):
    import signal

    seen = []

    class Probing(toy_task):
        def train_step(self, indices, step):
            if step == 1:
                seen.append(lock_is_free(tmp_path / "a"))
            return super().train_step(indices, step)

    fit_toy(tmp_path, "a", max_steps=4, task=Probing(total=4))
    assert seen == [False]  # held during training ...
    assert lock_is_free(tmp_path / "a") and not (tmp_path / "a" / ".lock").exists()  # ... released, no file left
    task = toy_task(total=20, signal_at=2)
    task.signal_at_kind = signal.SIGINT
    _, _, r = fit_toy(tmp_path, "b", task=task)
    assert r.status == "interrupted" and lock_is_free(tmp_path / "b")
    with pytest.raises(MaskgitError, match="loss is nan"):
        fit_toy(tmp_path, "c", task=toy_task(total=20, nan_at=3))
    assert lock_is_free(tmp_path / "c")
    _, _, r = fit_toy(tmp_path, "b", resume=True)  # this process can take it again, too
    assert r.status == "finished"


def test_a_failed_start_leaves_no_half_made_run_folder(tmp_path, monkeypatch):
    import os

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    run = RunDir(tmp_path / "runs" / "new")
    with pytest.raises(PermissionError) as e:
        run.start({"toy": 1}, resume=False)
    assert e.value.filename == str(run.config) and not run.locked
    assert list(tmp_path.iterdir()) == []  # neither runs/ nor runs/new is left
    monkeypatch.undo()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        RunDir(tmp_path / "file" / "run").start({"toy": 1}, resume=False)
    assert (tmp_path / "file").read_text() == "x"


def test_resume_of_a_folder_that_is_not_a_run_is_one_line(tmp_path, cli):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "state.safetensors").write_bytes(b"")
    for trainer in ("train", "train-vqgan"):
        r = cli(trainer, "--resume", folder)
        assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
            f"Error: --resume {folder}: not a training run (no readable config.json)"
        ], r.output
        assert "Traceback" not in r.output
    assert sorted(p.name for p in folder.iterdir()) == ["state.safetensors"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('epochs = "ten"', "epochs = 'ten': Invalid value for '--epochs': Input should be a valid integer, unable to "
         "parse string as an integer"),
        ("lr = nan", "lr = nan: Invalid value for '--lr': Input should be greater than or equal to 0"),
        ("train = 5", "train = 5: expected a [train] table of settings"),
        ("epochs = 0", "epochs = 0: Invalid value for '--epochs': Input should be greater than or equal to 1"),
        ("[train]\nepochs = 2.5", "epochs = 2.5: Invalid value for '--epochs': Input should be a valid integer, "
         "unable to parse string as an integer"),
        ("compile = 3", "compile = 3: expected true or false"),  # a switch: checked by the config's type
        ("betas = [0.9]", "betas = [0.9]: expected a list of 2 values"),
    ],
)  # fmt: skip
def test_config_values_are_checked_as_the_options_are(cli, tmp_path, setting, message):
    """Each --config value: the option's own check and message (the type where no option has its name), exit 2,
    one line, before any file is read or written."""
    toml = tmp_path / "cfg.toml"
    toml.write_text(setting + "\n")
    r = cli("train", tmp_path / "none.tokens", "-o", tmp_path / "run", "--config", toml)
    assert (r.exit_code, r.stderr) == (2, f"Error: --config {toml}: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml"]


def test_config_values_the_settings_refuse_exit_2_with_the_options_message(cli, tmp_path):
    toml = tmp_path / "cfg.toml"
    toml.write_text("lr = 0\n")
    r = cli("train", tmp_path / "none.tokens", "-o", tmp_path / "run", "--config", toml)
    assert (r.exit_code, r.stderr) == (2, "Error: --lr must be positive, got 0.0\n")
    r = cli("train", tmp_path / "none.tokens", "-o", tmp_path / "run", "--lr", "0")
    assert (r.exit_code, r.stderr) == (2, "Error: --lr must be positive, got 0.0\n")


def test_config_values_are_type_checked_in_the_python_api(tmp_path):
    from maskgit_cli.training.run import resolve_run
    from maskgit_cli.transformer.train import TrainConfig

    toml = tmp_path / "cfg.toml"
    for setting, message in (('epochs = "ten"', "epochs = 'ten': expected a whole number"),
                             ("lr = inf", "lr = inf: expected a finite number"),
                             ('preset = 1', "preset = 1: expected text in quotes")):  # fmt: skip
        toml.write_text(setting + "\n")
        with pytest.raises(OptionError) as e:
            resolve_run(TrainConfig, "train", {}, output=tmp_path / "r", data={}, toml=toml)
        assert str(e.value) == f"--config {toml}: {message}"
    toml.write_text("lr = 1\nbetas = [0, 1]\n")
    config = resolve_run(TrainConfig, "train", {}, output=tmp_path / "r", data={}, toml=toml).config
    assert (config.lr, config.betas) == (1.0, (0.0, 1.0)) and isinstance(config.lr, float)
