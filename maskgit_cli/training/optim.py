"""What a trainer's step uses besides its model: seeded random streams, the data order, the warmup-cosine learning
rate, AdamW with weight decay on matrices only, and an EMA of the weights.

Each is a small pure piece (a function of the seed or the step, or a state the task returns from ``state_dict``),
so that a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------------
# Seeds and data order


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream named by ``keys`` (e.g. (seed, epoch)); independent streams per key."""
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFF for k in keys)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def seeded_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits ``n`` items: a permutation seeded by (seed, epoch)."""
    return torch.randperm(n, generator=seeded_generator(seed, 0xDA7A, epoch))


# ---------------------------------------------------------------------------------------------------------
# Learning rate and optimizer


@dataclass
class WarmupCosine:
    """Linear warmup from 0 to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at
    ``total_steps``. A pure function of the step: ``schedule(step) -> lr``."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set ``optimizer``'s learning rate for ``step`` (:func:`set_lr`) and return it."""
        lr = self(step)
        set_lr(optimizer, lr)
        return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr (times the group's optional ``lr_scale``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def adamw_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay only on matrices, conv kernels and embeddings (ndim >= 2); none on biases and norms."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_adamw(model: torch.nn.Module, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.99)):
    """AdamW over :func:`adamw_param_groups`; the fused CUDA kernel when the model is on a GPU."""
    fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(adamw_param_groups(model, weight_decay), lr=lr, betas=tuple(betas), fused=fused or None)


# ---------------------------------------------------------------------------------------------------------
# Weight averaging


class ModelEMA:
    """Exponential moving average of a model's floating-point weights (kept in fp32), for evaluation/export."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - self.decay)

    def averaged_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged weights in place of the live ones (original dtypes)."""
        return {k: self.shadow[k].to(v.dtype) if k in self.shadow else v for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        self.shadow = {k: v.float().clone() for k, v in state["shadow"].items()}
