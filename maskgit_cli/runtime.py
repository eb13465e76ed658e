"""Devices, seeds, precision and torchrun's process group: the small bits of torch set-up every command shares.

Under ``torchrun`` (WORLD_SIZE > 1) `train`, `tokenize` and `inpaint` join one process group
(:func:`init_distributed`): `train` shares every global batch out (DDP), `tokenize` and `inpaint` give rank r the
files r, r + W, r + 2W, ... (:func:`shard`) and gather the results on rank 0 (:func:`gather_results`), which alone
writes files and progress.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

from maskgit_cli.choices import DECODE_PRECISIONS, DEVICES, check_choice
from maskgit_cli.errors import MaskgitError, OptionError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MaskgitError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise OptionError(f"--device {name}: expected one of {', '.join(DEVICES)}")
    return torch.device(name)


def distributed() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group, (0, 1) when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: torch.device | str) -> tuple[int, int, torch.device]:
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on CUDA, gloo on CPU) and pick the device (a
    --device name or a torch.device; CUDA: the rank's own GPU, LOCAL_RANK); the progress bars and log lines of
    the other ranks are silenced. Returns (rank, world size, device); (0, 1, the device) outside torchrun."""
    device = resolve_device(str(device))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank()
    if rank != 0:  # rank 0 alone shows progress and logs; errors still print on every rank
        from maskgit_cli.progress import console

        console.quiet = True
    return rank, torch.distributed.get_world_size(), device


def shard(count: int, rank: int, world: int) -> range:
    """The items of rank ``rank`` of ``world`` among ``count``: rank, rank + world, rank + 2 world, ..."""
    return range(rank, count, world)


T = TypeVar("T")


def gather_results(work: Callable[[], T]) -> list[T]:
    """Run ``work()`` on this rank and return every rank's result, in rank order (``[work()]`` outside torchrun).
    A MaskgitError on any rank is raised on every rank (the lowest rank's), so that no rank waits for one that
    stopped and rank 0 cleans up what it was writing."""
    world = distributed()[1]
    if world == 1:
        return [work()]
    try:
        result, error = work(), None
    except MaskgitError as e:
        result, error = None, str(e)
    gathered: list = [None] * world
    torch.distributed.all_gather_object(gathered, (result, error))
    errors = [e for _, e in gathered if e is not None]
    if errors:
        raise MaskgitError(errors[0])
    return [r for r, _ in gathered]


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
