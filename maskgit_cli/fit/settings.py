"""The settings `maskgit fit` gives each stage, without torch: `make weights`' (tools/make_weights.sh) for the
``default`` preset, in its CPU and GPU sizings, and a ``tiny`` preset for tests; the time budget's split."""

from __future__ import annotations

from typing import Any

from maskgit_cli.errors import MaskgitError

STAGES = ("vqgan", "decoder", "tokens", "transformer")
TRAINERS = {"vqgan": "train-vqgan", "decoder": "tune-decoder", "tokens": "tokenize", "transformer": "train"}
FIT_PRESETS = ("default", "tiny")
SIZINGS = ("cpu", "gpu")  # the GPU sizing where the device is CUDA

# --time-budget: each stage's share of the minutes. Time a stage leaves unused goes to the stages after it.
BUDGET_SHARES = {"vqgan": 0.40, "decoder": 0.15, "tokens": 0.05, "transformer": 0.40}

# What every trainer gets: `make weights`' precision and seed.
COMMON = {"precision": "auto", "seed": 0}
# The transformer's objective: the paper's random masks, half of the grids a hole users draw instead (shaped_masks;
# weights/README.md, "Holes users draw": higher validation accuracy under box, half and outpaint holes, strokes not
# lower), no masked copies.
OBJECTIVE = {"mask_ratio": "cosine", "label_smoothing": 0.1, "copies_ratio": 0.0, "shaped_masks": 0.5}
# The token caches: the training images and their mirror images; the validation images with one masked copy (for
# validation's copies_acc and the context fidelity).
TOKENS = {"train": {"flip": True, "masked_copies": 0}, "val": {"flip": False, "masked_copies": 1, "mask_seed": 1}}
# The generated validation masks when none are given (as data/emoji64's val_mask64: stroke masks).
VAL_MASKS = {"kind": "stroke", "seed": 1}

# preset -> sizing -> stage -> the trainer's options (tools/make_weights.sh, now one `maskgit fit`, says why each
# value; the CPU sizing is that of the commands that made the shipped weights, weights/README.md: test_fit checks).
_DEFAULT = {
    "cpu": {
        "vqgan": {"preset": "local", "batch_size": 16, "lr": 1e-3, "warmup_steps": 200, "max_steps": 5000,
                  "eval_every": 500},
        "decoder": {"batch_size": 16, "lr": 5e-4, "warmup_steps": 50, "max_steps": 3000, "eval_every": 500},
        "transformer": {"preset": "small", "batch_size": 64, "accum_grad": 2, "lr": 1e-3, "warmup_steps": 100,
                        "max_steps": 1500, "eval_every": 250},
    },
    "gpu": {
        "vqgan": {"preset": "local", "batch_size": 128, "lr": 8e-4, "warmup_steps": 300, "max_steps": 4000,
                  "eval_every": 1000},
        "decoder": {"batch_size": 128, "lr": 4e-4, "warmup_steps": 50, "max_steps": 1000, "eval_every": 250},
        "transformer": {"preset": "small", "batch_size": 256, "lr": 1e-3, "warmup_steps": 300, "max_steps": 6000,
                        "eval_every": 500},
    },
}  # fmt: skip
# Seconds on 2 CPU cores: the tiny models, a few steps each (tests).
_TINY = {
    "vqgan": {"preset": "tiny", "batch_size": 8, "lr": 1e-3, "warmup_steps": 4, "max_steps": 16, "eval_every": 8},
    "decoder": {"batch_size": 8, "lr": 5e-4, "warmup_steps": 2, "max_steps": 6, "eval_every": 6},
    "transformer": {"preset": "tiny", "batch_size": 16, "lr": 1e-3, "warmup_steps": 4, "max_steps": 24,
                    "eval_every": 12},
}  # fmt: skip
SETTINGS = {"default": _DEFAULT, "tiny": {"cpu": _TINY, "gpu": _TINY}}


def stage_options(preset: str, sizing: str, stage: str) -> dict[str, Any]:
    """The options of the trainer of ``stage`` (vqgan, decoder, transformer) in ``preset`` and ``sizing``."""
    if preset not in SETTINGS:
        raise MaskgitError(f"--preset {preset}: expected one of {', '.join(FIT_PRESETS)}")
    extra = OBJECTIVE if stage == "transformer" else {"resize": True}  # images of any size are resized
    return {**COMMON, **SETTINGS[preset][sizing][stage], **extra}


def fitted_batch(options: dict[str, Any], images: int) -> dict[str, Any]:
    """``options`` with a batch no larger than the training images (a small folder still trains), in whole
    micro-batches of ``accum_grad``."""
    accum = options.get("accum_grad", 1)
    if options["batch_size"] <= images:
        return options
    return {**options, "batch_size": max(accum, images // accum * accum)}


def budget_shares(stages: list[str]) -> dict[str, float]:
    """Each of ``stages`` (those left to run) as its share of the minutes left."""
    total = sum(BUDGET_SHARES[s] for s in stages)
    return {s: BUDGET_SHARES[s] / total for s in stages}
