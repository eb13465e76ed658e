"""Run folders: a new run never overwrites another, resuming needs a run, and resumed settings must match."""

from pathlib import Path

import pytest

from maskgit_cli.errors import MaskgitError
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
