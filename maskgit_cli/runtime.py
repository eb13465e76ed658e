"""Devices, seeds and precision: the small bits of torch set-up every command shares."""

from __future__ import annotations

import functools
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


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where ``cpuinfo`` cannot be read)."""
    try:
        with open(cpuinfo) as f:
            return frozenset(next((line for line in f if line.startswith("flags")), "").split(":")[-1].split())
    except OSError:
        return frozenset()


def native_bf16(device: torch.device, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Does ``device`` compute bf16 natively? CUDA GPUs that support it, and CPUs with AVX512-BF16 or AMX-BF16
    (AMD EPYC Zen 4+, Intel Xeon Sapphire Rapids+); elsewhere bf16 is emulated, and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = cpu_flags(cpuinfo)
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 where the device computes it natively (:func:`native_bf16`), else fp32."""
    check_choice(precision, DECODE_PRECISIONS, "--precision")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def vqgan_autocast(device: torch.device, precision: str = "auto"):
    """The VQGAN's rule: bf16 on CUDA, fp32 on CPU, so that tokens from a CPU are the same on every CPU kind (bf16 or
    not); ``precision`` "fp32" (inpainting's `--precision fp32`, `--lab`) runs it in fp32 on CUDA too."""
    return autocast(device, "bf16" if device.type == "cuda" and precision != "fp32" else "fp32")


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on CUDA and CPU; fp32 = no autocast, also inside an outer autocast (a VQGAN decode within the
    transformer's bf16 region stays fp32); auto = :func:`resolve_precision`."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
