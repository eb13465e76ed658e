"""The stages of `maskgit fit`, each run as its own command runs it: a trainer's run folder started with the fit's
settings, or resumed exactly from its state file (settings from its config.json, as ``--resume`` takes them); the
token caches written whole or not at all (a cache already written is kept)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskgit_cli.fit.settings import TOKENS, TRAINERS
from maskgit_cli.fit.split import Split
from maskgit_cli.training.run import RunDir, resolve_run
from maskgit_cli.transformer.settings import TrainConfig
from maskgit_cli.transformer.train import train_transformer
from maskgit_cli.viz import read_jsonl
from maskgit_cli.vqgan.settings import TrainVQGANConfig, TuneDecoderConfig
from maskgit_cli.vqgan.tokens import tokenize_folder
from maskgit_cli.vqgan.train import train_vqgan
from maskgit_cli.vqgan.tune_decoder import tune_decoder
from maskgit_cli.weights import read_metadata, read_shapes

SMALL_FOLDER = 512  # images: tokenized in this process (starting decoding workers costs more than it saves)


@dataclass
class StageResult:
    """What one stage did in this call."""

    stage: str
    status: str  # finished | stopped (a stop_at) | interrupted (a signal)
    exit_code: int  # 0, or 130/143 after a signal
    seconds: float  # wall time of this call
    steps: int | None  # None: the token stage has no steps
    images: int  # images (or token grids) the stage went through: steps x batch, or the caches' rows
    weights: str | None  # the file the next stage takes (a model file, or the training token cache)
    validation: dict[str, Any] = field(default_factory=dict)  # of the weights kept (best.safetensors)
    stopped_by: str | None = None  # "time budget": finished at its deadline, before its max_steps


# stage -> (config class, the library function as (data, run folder, config, resume) -> summary)
_TRAINERS = {
    "vqgan": (TrainVQGANConfig, lambda d, out, c, r: train_vqgan(d["train_dir"], d["val_dir"], out, c, resume=r)),
    "decoder": (
        TuneDecoderConfig,
        lambda d, out, c, r: tune_decoder(d["vqgan"], d["train_dir"], d["val_dir"], out, c, resume=r),
    ),
    "transformer": (
        TrainConfig,
        lambda d, out, c, r: train_transformer(d["train"], d["val"], out, c, resume=r, val_masks_dir=d["val_masks"]),
    ),
}


def stage_data(stage: str, split: Split, previous: str | None, tokens: dict[str, Path] | None = None) -> dict:
    """The data paths a trainer of ``stage`` starts from (``previous``: the stage before's weights)."""
    if stage == "vqgan":
        return {"train_dir": split.train, "val_dir": split.val}
    if stage == "decoder":
        return {"vqgan": previous, "train_dir": split.train, "val_dir": split.val}
    return {"train": tokens["train"], "val": tokens["val"], "val_masks": split.val_masks}


def run_trainer(stage: str, run_dir: Path, options: dict, data: dict, stop_at: int | None = None) -> dict:
    """Start the run of ``stage``'s trainer in ``run_dir`` with ``options``, or resume it exactly where its state
    file left it (a finished run returns at once); ``stop_at``: stop after that step as an interruption would."""
    config_cls, train = _TRAINERS[stage]
    given = {} if stop_at is None else {"stop_at": stop_at}
    if RunDir(run_dir).state.is_file():
        run = resolve_run(config_cls, TRAINERS[stage], given, output=None, resume=run_dir, data=dict.fromkeys(data))
    else:
        run = resolve_run(config_cls, TRAINERS[stage], {**options, **given}, output=run_dir, data=data)
    return train(run.data, run.output, run.config, run.resume)


def train_stage(stage: str, run_dir: Path, options: dict, data: dict, stop_at: int | None = None) -> StageResult:
    """:func:`run_trainer`, summed up: steps, images, the weights kept and their validation figures."""
    start = time.perf_counter()
    s = run_trainer(stage, run_dir, options, data, stop_at)
    return stage_result(stage, run_dir, s, time.perf_counter() - start)


def stage_result(stage: str, run_dir: Path, s: dict, seconds: float) -> StageResult:
    """The stage whose trainer returned ``s`` for its run ``run_dir`` (where it ran, or where it was moved to)."""
    batch = json.loads(RunDir(run_dir).config.read_text())["train"]["batch_size"]
    timed_out = s["status"] == "out of time"  # the fit's deadline: the stage is done, its run resumable
    status, stopped_by = ("finished", "time budget") if timed_out else (s["status"], None)
    weights = s["weights"] and str(run_dir / Path(s["weights"]).name)
    return StageResult(stage, status, s["exit_code"], seconds, s["step"], s["step"] * batch, weights,
                       validation_at(run_dir, s["best_step"]), stopped_by)  # fmt: skip


def validation_at(run_dir: Path, step: int | None) -> dict[str, float]:
    """The validation figures a run logged at ``step`` (its best.safetensors'), from its metrics.jsonl."""
    metrics = RunDir(run_dir).metrics
    if step is None or not metrics.is_file():
        return {}
    found = [r for r in read_jsonl(metrics) if r.get("kind") == "val" and r.get("step") == step]
    return {k: v for k, v in found[-1].items() if k not in ("kind", "step", "epoch")} if found else {}


def token_caches(folder: Path) -> dict[str, Path]:
    """Where the token stage writes the training and validation caches."""
    return {"train": folder / "train.tokens", "val": folder / "val.tokens"}


def tokens_stage(split: Split, vqgan: str, folder: Path, device, stop_at: int | None = None) -> StageResult:
    """Tokenize the training images (and their mirror images) and the validation images (with a masked copy) with
    the fine-tuned VQGAN; a cache already written is kept. ``stop_at`` 1: stop after the training cache."""
    start = time.perf_counter()
    caches = token_caches(folder)
    for part, images_dir in (("train", split.train), ("val", split.val)):
        if part == "val" and stop_at == 1:
            return StageResult("tokens", "stopped", 0, time.perf_counter() - start, None, _rows(caches), None)
        if caches[part].is_file():
            continue
        count = split.train_images if part == "train" else split.val_images
        tokenize_folder(images_dir, vqgan, caches[part], device=device, resize=True, overwrite=True,
                        num_workers=0 if count < SMALL_FOLDER else None, **TOKENS[part])  # fmt: skip
    fidelity = read_metadata(caches["val"]).get("context_fidelity")  # of the validation images' masked copies
    validation = {"context_fidelity": float(fidelity)} if fidelity else {}
    seconds = time.perf_counter() - start
    return StageResult("tokens", "finished", 0, seconds, None, _rows(caches), str(caches["train"]), validation)


def _rows(caches: dict[str, Path]) -> int:
    """The token grids the caches written so far hold."""
    return sum(read_shapes(p, keep=lambda k: k == "tokens")["tokens"][0] for p in caches.values() if p.is_file())
