"""Devices, seeds and precision: the small bits of torch set-up every command shares."""

from __future__ import annotations

import random

import numpy as np
import torch

from maskgit_cli.choices import DECODE_PRECISIONS, DEVICES, check_choice
from maskgit_cli.errors import MaskgitError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MaskgitError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise MaskgitError(f"--device {name}: expected one of {', '.join(DEVICES)}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on CUDA and CPU (1.7x faster training on a 2-core CPU, docs/machines.md); fp32 = no
    autocast, also inside an outer autocast (a VQGAN decode within the transformer's bf16 region stays fp32);
    auto = bf16 on CUDA, fp32 on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    check_choice(precision, DECODE_PRECISIONS, "--precision")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
