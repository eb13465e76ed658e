"""The settings every trainer shares, declared and checked once.

:class:`TrainSettings` holds the training loop's and the optimizer's settings (run length, batches, AdamW with a
warmup-cosine learning rate, precision, seed, how often to evaluate, save and log, device). Each trainer's config
(`train-vqgan`, `robust-vqgan`, `tune-decoder`, `train`) extends it with its own settings and redeclares the fields
whose default differs; config.json's ``train`` holds them all (its keys sorted, whatever the field order).
"""

from __future__ import annotations

from dataclasses import dataclass

from maskgit_cli.choices import PRECISIONS, check_choice
from maskgit_cli.errors import MaskgitError


@dataclass
class TrainSettings:
    """The loop's and the optimizer's settings, common to every trainer."""

    epochs: int | None = None  # stop after this many epochs ...
    max_steps: int | None = None  # ... or this many optimizer steps, whichever comes first
    batch_size: int = 16
    lr: float = 5e-4  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 0.0  # AdamW's, on matrices only
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    precision: str = "auto"  # bf16 (autocast) | fp32 | auto: bf16 where the hardware has it, else fp32
    seed: int = 0
    eval_every: int = 0  # steps; 0 = every epoch
    save_every: int = 0  # steps; 0 = at every evaluation
    log_every: int = 10  # steps per metrics.jsonl record
    stop_at: int | None = None  # stop after this step as an interruption would (resumable)
    device: str = "auto"
    val_batch_size: int = 128

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # a list from config.json or TOML
        check_choice(self.precision, PRECISIONS, "--precision")
        if self.lr <= 0:
            raise MaskgitError(f"--lr must be positive, got {self.lr}")
        at_least_one(self, "batch_size", "log_every", "val_batch_size")


def at_least_one(settings, *names: str) -> None:
    """Each setting ``names`` of ``settings`` must be at least 1: one error naming its option otherwise."""
    for name in names:
        value = getattr(settings, name)
        if value < 1:
            raise MaskgitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
