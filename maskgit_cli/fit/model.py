"""`maskgit fit IMAGES -o MODEL`: the stages in order into a model folder, continued where a previous call stopped.

MODEL/runs/ holds everything the stages make: data/ (the split and the validation masks), vqgan/, decoder/ and
transformer/ (the trainers' run folders), tokens/ (the token caches) and fit.json (the fit's settings, checked
again when it is continued, and what each stage did: seconds over every call, steps, images, validation figures).
A stage fit.json marks done is skipped; any other is started, or resumed exactly from its state file. At the end
MODEL gets vqgan.safetensors (the fine-tuned decoder's VQGAN), transformer.safetensors (with the card in its
metadata) and the card (card.json, README.md).
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import torch

from maskgit_cli import __version__
from maskgit_cli.errors import MaskgitError, OptionError
from maskgit_cli.fit.budget import Clock, budgeted
from maskgit_cli.fit.settings import STAGES, TRAINERS, fitted_batch, stage_options
from maskgit_cli.fit.split import Split, check_folders, make_split
from maskgit_cli.fit.stages import (
    StageResult,
    run_trainer,
    stage_data,
    stage_result,
    token_caches,
    tokens_stage,
    train_stage,
)
from maskgit_cli.model_card import CARD_KEY, FILES, card_summary, write_card
from maskgit_cli.progress import log
from maskgit_cli.runtime import resolve_device
from maskgit_cli.training.loop import deadline
from maskgit_cli.training.run import RunDir
from maskgit_cli.vqgan.resolution import DEFAULT_DOWNSAMPLE, DEFAULT_RESOLUTION, check_resolution
from maskgit_cli.weights import atomic_path, load_config, read_metadata, read_tensors, save_tensors

STATE_FILE = "fit.json"
# A fit continues only with these settings unchanged.
SAME_SETTINGS = ("images", "val", "val_masks", "preset", "sizing", "resolution", "downsample")


@dataclass
class FitSummary:
    """What :func:`fit_model` did: the model folder, how it ended, every stage so far and the card."""

    model: str
    status: str  # finished | stopped | interrupted
    exit_code: int  # 0, or 130/143 after a signal
    stages: list[dict[str, Any]]  # the card's stages (those run so far)
    split: dict[str, Any]
    inpaint: str  # the command that inpaints with the model
    card: dict[str, Any] = field(default_factory=dict)  # when finished


class FitState:
    """MODEL/runs/fit.json: the fit's settings and what each stage did, written after every stage."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path, self.settings = path, settings
        saved = json.loads(path.read_text()) if path.is_file() else {}
        old = saved.get("settings", settings)
        changed = [k for k in SAME_SETTINGS if old.get(k) != settings.get(k)]
        if changed:
            what = "; ".join(f"{k} {old.get(k)!r} then, {settings.get(k)!r} now" for k in changed)
            raise MaskgitError(
                f"{path.parent.parent} holds a fit of other settings ({what}): give the same ones to continue it, "
                "or another -o"
            )
        self.stages: dict[str, dict[str, Any]] = saved.get("stages", {})

    def done(self, stage: str) -> bool:
        entry = self.stages.get(stage, {})
        return entry.get("status") == "finished" and Path(entry.get("weights") or "").is_file()

    @property
    def seconds(self) -> float:
        return sum(e.get("seconds", 0.0) for e in self.stages.values())

    def add(self, r: StageResult, extra_seconds: float = 0.0) -> dict[str, Any]:
        """Record ``r`` (its seconds added to the stage's earlier calls'), then save."""
        entry = self.stages.get(r.stage, {})
        seconds = round(entry.get("seconds", 0.0) + r.seconds + extra_seconds, 1)
        entry = {"stage": r.stage, "status": r.status, "seconds": seconds, "steps": r.steps, "images": r.images,
                 "images_per_second": round(r.images / max(seconds, 1e-9), 1), "weights": r.weights,
                 "validation": r.validation}  # fmt: skip
        if r.stopped_by:
            entry["stopped_by"] = r.stopped_by
        self.stages[r.stage] = entry
        self.save()
        return entry

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"settings": self.settings, "stages": self.stages}, indent=2) + "\n")

    def card_stages(self) -> list[dict[str, Any]]:
        keys = ("stage", "seconds", "images_per_second", "steps", "validation", "stopped_by")
        return [{k: self.stages[s][k] for k in keys if k in self.stages[s]} for s in STAGES if s in self.stages]


def fit_model(
    images,
    model,
    val=None,
    val_masks=None,
    preset: str = "default",
    resolution: int | None = None,
    downsample: int | None = None,
    time_budget: float | None = None,
    device: str = "auto",
    command: str | None = None,
    stop_at: dict[str, int] | None = None,
) -> FitSummary:
    """Train a model of ``images`` into the model folder ``model``: every stage with `make weights`' settings of
    ``preset`` (the GPU sizing on CUDA), at ``resolution`` x ``resolution`` with tokens of ``downsample`` pixels
    (None: train-vqgan's defaults, 64 and 4; images of other sizes are resized), validated on ``val`` (default:
    held out of ``images``) under ``val_masks`` (default: generated stroke masks). Continues a fit stopped before;
    ``time_budget`` minutes split over the stages (:mod:`maskgit_cli.fit.budget`); ``stop_at`` {stage: step}: stop
    there as an interruption would."""
    dev = resolve_device(device)
    sizing = "gpu" if dev.type == "cuda" else "cpu"
    model, runs = Path(model), Path(model) / "runs"
    if model.exists() and not model.is_dir():
        raise MaskgitError(f"-o {model}: exists and is not a folder")
    folders = [Path(images)] if isinstance(images, (str, Path)) else [Path(f) for f in images]
    if not folders:
        raise OptionError("IMAGES: give at least one folder")
    every = [str(f.resolve()) for f in folders]
    settings = {"images": every[0] if len(every) == 1 else every, "val": val and str(Path(val).resolve()),
                "val_masks": val_masks and str(Path(val_masks).resolve()), "preset": preset, "sizing": sizing,
                "resolution": resolution, "downsample": downsample, "device": dev.type,
                "time_budget": time_budget}  # fmt: skip
    stage_options(preset, sizing, "vqgan")  # an unknown preset or size is an error before anything is written
    check_resolution(resolution or DEFAULT_RESOLUTION, downsample or DEFAULT_DOWNSAMPLE)
    check_folders(folders, val)
    created = not model.exists()
    try:
        runs.mkdir(parents=True, exist_ok=True)
        state = FitState(runs / STATE_FILE, settings)
        split = make_split(folders, val, val_masks, runs / "data", resolution or DEFAULT_RESOLUTION)
    except MaskgitError:  # a bad folder or mask: no half-made model folder is left behind
        if created:
            shutil.rmtree(model, ignore_errors=True)
        raise
    size = {k: v for k, v in (("resolution", resolution), ("downsample", downsample)) if v is not None}
    command = command or f"maskgit fit {' '.join(map(str, folders))} -o {model}"
    inpaint = f"maskgit inpaint --model {model} --images {split.val} --mask-kind stroke -o {model}-inpainted"
    fit = _Fit(runs, split, dev, preset, sizing, size, Clock(time_budget, state.seconds))
    for stage in STAGES:
        if state.done(stage):
            log(f"== fit {stage}: done before ({state.stages[stage]['seconds']:.0f} s), skipped")
            continue
        r = _run_stage(stage, state, fit, (stop_at or {}).get(stage))
        if r.status != "finished":
            log(f"== fit {stage}: {r.status}; run the same command again to continue")
            return FitSummary(str(model), r.status, r.exit_code, state.card_stages(), split.card(), inpaint)
    card = _card(model, folders, split, state, dev, preset, sizing, command, time_budget)
    write_model(model, state.stages["decoder"]["weights"], state.stages["transformer"]["weights"], card)
    log(f"== fit: wrote {model} ({', '.join(FILES.values())}, card.json, README.md)")
    return FitSummary(str(model), "finished", 0, state.card_stages(), split.card(), inpaint, card)


@dataclass
class _Fit:
    """What every stage of one call of :func:`fit_model` runs with."""

    runs: Path  # MODEL/runs
    split: Split
    device: torch.device
    preset: str
    sizing: str
    size: dict[str, int]  # the VQGAN's resolution and downsample, where given
    clock: Clock


def _run_stage(stage: str, state: FitState, fit: _Fit, stop_at: int | None) -> StageResult:
    """One stage: its options (its share of the budget, when there is one), then the stage, recorded."""
    number, split, runs = f"{STAGES.index(stage) + 1}/{len(STAGES)}", fit.split, fit.runs
    if stage == "tokens":
        log(f"== fit {number} tokens: tokenize {split.train} (+ flips) and {split.val} -> {runs / 'tokens'}")
        r = tokens_stage(split, state.stages["decoder"]["weights"], runs / "tokens", fit.device, stop_at)
        return _finish(state, r, number)
    images = split.train_images * (2 if stage == "transformer" else 1)  # the token caches hold the flips too
    options = {**fitted_batch(stage_options(fit.preset, fit.sizing, stage), images), "device": fit.device.type}
    if stage == "vqgan":
        options.update(fit.size)
    data = stage_data(stage, split, (state.stages.get("vqgan") or {}).get("weights"), token_caches(runs / "tokens"))
    run_dir, probe_seconds, end, reserve = runs / stage, 0.0, None, 0.0
    resuming = RunDir(run_dir).state.is_file()
    if fit.clock.total is not None:
        start, left = fit.clock.spent(), [s for s in STAGES if not state.done(s)]
        share = fit.clock.share(stage, left)
        end = time.perf_counter() + share  # the stage's deadline, its probe included
        if not resuming:
            trainer = functools.partial(run_trainer, stage, data=data)  # (run folder, options) -> summary
            probe_dir = runs / f"{stage}.probe"
            with deadline(end):
                options, p = budgeted(stage, trainer, options, probe_dir, share)
            probe_seconds, reserve = fit.clock.spent() - start, p.validation + p.plot
            if options is None:  # the probe's run is the stage's
                shutil.rmtree(run_dir, ignore_errors=True)  # a run killed before its first checkpoint, if any
                probe_dir.rename(run_dir)
                return _finish(state, stage_result(stage, run_dir, p.summary, 0.0), number, probe_seconds)
    length = "resuming its run" if resuming else f"{options['max_steps']} steps of {options['batch_size']}"
    log(f"== fit {number} {stage}: `maskgit {TRAINERS[stage]}` on {images} images, {length} -> {run_dir}")
    with deadline(end, reserve):
        r = train_stage(stage, run_dir, options, data, stop_at)
    return _finish(state, r, number, probe_seconds)


def _finish(state: FitState, r: StageResult, number: str, probe_seconds: float = 0.0) -> StageResult:
    entry = state.add(r, probe_seconds)
    figures = ", ".join(f"{k} {v:.4g}" for k, v in entry["validation"].items())
    how = f"{r.status} (stopped by the {r.stopped_by} at step {r.steps})" if r.stopped_by else r.status
    log(
        f"== fit {number} {r.stage}: {how} in {entry['seconds']:.1f} s ({entry['images_per_second']:.1f} img/s)"
        + (f"; validation {figures}" if figures else "")
    )
    return r


def write_model(model: Path, vqgan: str, transformer: str, card: dict[str, Any]) -> None:
    """The model folder's files: the VQGAN, the transformer with the card in its metadata, card.json, README.md."""
    with atomic_path(model / FILES["vqgan"]) as tmp:
        shutil.copyfile(vqgan, tmp)
    metadata = {**read_metadata(transformer), CARD_KEY: json.dumps(card)}
    save_tensors(model / FILES["transformer"], read_tensors(transformer), metadata)
    write_card(model, card)


def _card(
    model: Path, folders: list[Path], split: Split, state: FitState, dev, preset, sizing, command, budget
) -> dict:
    """The model card of a finished fit (:mod:`maskgit_cli.model_card`); several IMAGES folders are all listed."""
    _, vqgan = load_config(state.stages["decoder"]["weights"], "vqgan")
    size, grid = vqgan.img_resolution, vqgan.latent_resolution
    named = f"{folders[0].resolve().name}/"
    if len(folders) > 1:  # data/emoji64/train data/blob64/train: "emoji64/train/, blob64/train/"
        named = ", ".join(f"{f.resolve().parent.name}/{f.resolve().name}/" for f in folders)
    return {
        "name": model.resolve().name,
        "note": f"trained on {split.train_images:,} images of {named} at {size}x{size} (maskgit fit): pictures "
        "unlike them will not look right",
        "trained_on": {
            "folder": " ".join(map(str, folders)),  # every IMAGES folder, as on the command line
            "images": split.train_images,
            "files_sha256": split.files_sha256,
            "resolution": size,
        },  # fmt: skip
        "split": split.card(),  # the training and validation images, and how the validation images were chosen
        "resolution": size,
        "tokens": [grid, grid],
        "downsample": size // grid,
        "codes": vqgan.num_codebook_vectors,
        "stages": state.card_stages(),
        "device": device_name(dev),
        "created": date.today().isoformat(),
        "maskgit_version": __version__,
        "command": command,
        "preset": preset,
        "sizing": sizing,
        "time_budget_minutes": budget,
    }


def device_name(dev: torch.device) -> str:
    """The device a fit ran on, in words: the GPU's name, or the CPU's model and the threads torch used."""
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"cpu: {name}, {torch.get_num_threads()} threads"


def summary_dict(s: FitSummary) -> dict[str, Any]:
    """A fit's summary as JSON (`maskgit fit --json`)."""
    return {"model": s.model, "status": s.status, "exit_code": s.exit_code, "stages": s.stages, "split": s.split,
            "inpaint": s.inpaint, "card": card_summary(s.card)}  # fmt: skip
