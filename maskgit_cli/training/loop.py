"""The training loop shared by every trainer (`maskgit train-vqgan`, `maskgit train`).

A trainer describes *what* one step does in a small task object (:class:`TrainTask`); :func:`fit` does
everything around it, the same way for every model:

- **Run directory** ``runs/NAME/`` (:class:`RunDir`): ``config.json`` (the run's settings, checked on
  resume), ``metrics.jsonl`` (one JSON object per line), ``curves.png``, ``last.safetensors`` and
  ``best.safetensors`` (model files any command can load) and ``state.safetensors`` (everything needed to
  resume).
- **Data order**: epoch ``e`` visits the items in the order ``epoch_order(seed, e, n)``, a permutation drawn
  from a ``torch.Generator`` seeded by (seed, e), in full batches (the last partial batch is dropped).
  A run resumed mid-epoch therefore continues with exactly the batches it would have seen.
- **Learning rate**: a pure function of the step (:class:`WarmupCosine`), so the schedule's whole state is
  the step counter and a resumed run continues the schedule instead of restarting it.
- **Checkpoints** (:class:`Checkpointer`): one self-contained ``state.safetensors`` without pickle: every
  tensor (model weights, optimizer moments, EMA weights, RNG states as uint8 tensors) is a safetensors
  tensor, and the nesting around them (optimizer param groups, step, epoch, position inside the epoch,
  best score) is JSON in the file's metadata. Every file is written under a temporary name and renamed into
  place, one at a time, so a crash (even mid-write) leaves the previous checkpoint whole and consistent.
- **Stopping**: after ``max_steps`` / ``epochs``; ``stop_at=N`` stops after step N exactly as an
  interruption does (checkpoint, then return); SIGINT/SIGTERM finish the current step, save a resumable
  checkpoint and return exit code 130/143 (a second signal aborts at once); a NaN/inf loss raises
  :class:`MaskgitError` and leaves the last good checkpoint untouched. A run stopped before its first
  validation also exports its model as ``best.safetensors`` (metadata ``val = "none yet"``), so the later
  steps have a model file to load; the first validation replaces it.
- **Write errors** (a full disk, no permission): :class:`SaveError`, one line naming the file; the previous
  checkpoint stays whole (atomic writes) and resumable.
- **One training per run folder**: the folder is locked (:meth:`RunDir.start`) until :func:`fit` returns.
- **Logging**: a Rich progress bar (img/s and the current loss), ``metrics.jsonl`` and ``curves.png``.

Exact resume: on CPU, a run stopped at step N and resumed ends with bit-identical weights to the same run
without the interruption, provided the task keeps all of its randomness in torch generators that it
returns from ``state_dict`` (or in the global torch/numpy/python RNGs, which the loop saves itself).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError

from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import Bar, log, progress_bar
from maskgit_cli.training.run import MetricsLogger, RunDir, json_value
from maskgit_cli.training.state import Checkpointer, capture_rng, restore_rng
from maskgit_cli.viz import plot_curves

PLOT_INTERVAL_S = 60.0


# ---------------------------------------------------------------------------------------------------------
# The task interface: what a trainer plugs into fit()


class TrainTask(Protocol):
    """One model's training, as seen by :func:`fit`."""

    def train_step(self, indices: torch.Tensor, step: int) -> dict[str, float]:
        """Train on the items ``indices`` (a batch of dataset positions) at global ``step`` (0-based).

        Returns floats to log; ``"loss"`` is required and checked for NaN/inf. Set the learning rate from
        ``step`` (e.g. with :class:`WarmupCosine` and :func:`set_lr`)."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (may be empty). Must not consume the training RNGs."""

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume besides the loop's own state: models, optimizers, EMA weights, generators.
        Nested dicts/lists of tensors and JSON scalars (optimizer.state_dict() is fine as it is)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self, path: Path, metadata: dict[str, str]) -> None:
        """Write the model file other commands load (e.g. with ``weights.save_model``)."""


# ---------------------------------------------------------------------------------------------------------
# Seeds, data order, learning rate, optimizer


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream named by ``keys`` (e.g. (seed, epoch)); independent streams per key."""
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFF for k in keys)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def seeded_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits ``n`` items: a permutation seeded by (seed, epoch)."""
    return torch.randperm(n, generator=seeded_generator(seed, 0xDA7A, epoch))


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


# ---------------------------------------------------------------------------------------------------------
# Signals


class InterruptGuard:
    """While active, SIGINT/SIGTERM only set ``self.signum`` so the loop can finish its step and save.

    A second signal restores the default handlers and re-raises (KeyboardInterrupt for SIGINT), for users who
    really want out. Outside the main thread (where handlers cannot be installed) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            self._restore()
            signal.raise_signal(signum)
            return
        self.signum = signum
        log(
            f"{signal.Signals(signum).name} received: finishing the current step and saving a checkpoint "
            "(send it again to abort without saving)"
        )

    def _restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()


# ---------------------------------------------------------------------------------------------------------
# Write errors


class SaveError(MaskgitError, OSError):
    """A file of the run could not be written (a full disk, no permission): a user-facing error (one line on the
    command line) that is also an OSError, what it is underneath."""


def _write_error_reason(e: BaseException) -> str:
    """'No space left on device' from an OSError or a safetensors write error ('... (os error 28)')."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    found = re.search(r"os error (\d+)", str(e))
    return os.strerror(int(found[1])) if found else (str(e).strip().splitlines() or [type(e).__name__])[0]


@contextlib.contextmanager
def _writing(path: Path, step: int, kept: str):
    """Turn a failed write of ``path`` (at ``step``) into a :class:`SaveError` saying what is ``kept``."""
    try:
        yield
    except (OSError, SafetensorError) as e:
        if isinstance(e, MaskgitError):
            raise
        raise SaveError(
            f"{path}: cannot write it at step {step} ({_write_error_reason(e)}); training stopped and {kept}"
        ) from e


# ---------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopConfig:
    """How long to train and how often to evaluate, save and log."""

    batch_size: int
    epochs: int | None = None  # stop after this many epochs ...
    max_steps: int | None = None  # ... or this many steps, whichever comes first
    seed: int = 0
    eval_every: int = 0  # steps between evaluations; 0 = at the end of every epoch
    save_every: int = 0  # steps between checkpoints; 0 = at every evaluation (and always at the end/stop)
    log_every: int = 10  # steps per train record in metrics.jsonl (means over the window)
    stop_at: int | None = None  # stop after this step as an interruption would (resumable)
    best_metric: str | None = None  # evaluate() key that picks best.safetensors
    best_mode: str = "max"  # "max" or "min"

    @classmethod
    def of(cls, settings, best_metric: str | None = None, best_mode: str = "max") -> LoopConfig:
        """The loop part of a trainer's settings (any object with the loop's fields, e.g. a TrainConfig)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("best_metric", "best_mode")]
        return cls(**{n: getattr(settings, n) for n in names}, best_metric=best_metric, best_mode=best_mode)

    def steps_per_epoch(self, n: int) -> int:
        return n // self.batch_size

    def total_steps(self, n: int) -> int:
        spe = self.steps_per_epoch(n)
        if spe == 0:
            raise MaskgitError(
                f"only {n} training items: fewer than one batch of {self.batch_size} (lower --batch-size)"
            )
        limits = [v for v in (self.epochs * spe if self.epochs else None, self.max_steps) if v]
        if not limits:
            raise MaskgitError("give --epochs or --max-steps")
        return min(limits)


@dataclass
class FitResult:
    status: str  # "finished" | "stopped" (stop_at) | "interrupted" (signal)
    step: int
    total_steps: int
    epoch: int
    exit_code: int  # 0, or 130 (SIGINT) / 143 (SIGTERM)
    best: float | None  # best value of the best_metric
    best_step: int | None
    last_eval: dict[str, float]
    seconds: float

    def summary(self, run: RunDir) -> dict[str, Any]:
        """What every trainer returns about a run (the trainers add their own keys)."""
        weights = run.best if run.best.exists() else run.last
        return {
            "run": str(run.path),
            "status": self.status,
            "exit_code": self.exit_code,
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "best_step": self.best_step,
            "val": self.last_eval,
            "weights": str(weights) if weights.exists() else None,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class _Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of the current epoch done


def _fmt(values: dict[str, Any], keys: tuple[str, ...] | None = None) -> str:
    parts = []
    for k, v in values.items():
        if keys is not None and k not in keys:
            continue
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        else:
            parts.append(f"{k} {v}")
    return " ".join(parts)


def fit(
    task: TrainTask,
    run: RunDir,
    num_items: int,
    cfg: LoopConfig,
    *,
    resume: bool = False,
    description: str = "train",
    unit: str = "img",
    is_main: bool = True,
) -> FitResult:
    """Train ``task`` on ``num_items`` items as configured; see the module docstring for the guarantees.

    ``run.start(...)`` must have been called (it locks the run folder and writes or checks config.json); the
    lock is released when ``fit`` returns or raises. With ``resume`` the task, the loop position and the RNGs
    are restored from ``run.state`` first. ``is_main=False`` (the other ranks of a distributed run) trains in
    lock-step but writes no file, log line or progress bar.
    """
    try:
        return _fit(task, run, num_items, cfg, resume, description, unit, is_main)
    finally:
        run.unlock()


def _fit(
    task: TrainTask,
    run: RunDir,
    num_items: int,
    cfg: LoopConfig,
    resume: bool,
    description: str,
    unit: str,
    is_main: bool,
) -> FitResult:
    say = log if is_main else (lambda _message: None)
    spe = cfg.steps_per_epoch(num_items)
    total = cfg.total_steps(num_items)
    ckpt = Checkpointer(run.state)
    pos, best, best_step, last_eval = _Position(), None, None, {}
    if resume:
        state = ckpt.load()
        task.load_state_dict(state["task"])
        loop = state["loop"]
        pos = _Position(loop["step"], loop["epoch"], loop["batch"])
        best, best_step, last_eval = loop["best"], loop["best_step"], loop["last_eval"]
        restore_rng(state["rng"])
        if loop.get("total_steps") not in (None, total):
            say(
                f"run length changed from {loop['total_steps']} to {total} steps: the learning-rate schedule "
                "follows the new length from here on"
            )
        say(f"resuming {run.path} at step {pos.step}/{total} (epoch {pos.epoch + 1}, batch {pos.batch}/{spe})")
    metrics = MetricsLogger(run.metrics, keep_until_step=pos.step if resume else None) if is_main else None

    def record(kind: str, step: int, **values: Any) -> None:
        if metrics is not None:
            metrics.log(kind, step, **values)

    saved_step = pos.step if resume else None
    t_start = time.perf_counter()
    last_plot = [-math.inf]  # when curves.png was last drawn (drawing takes ~0.5 s: at most once a minute)
    tty = sys.stderr.isatty()

    def kept() -> str:
        """What a failed write leaves: the state file as it was last saved."""
        if saved_step:
            return f"{run.state} still holds step {saved_step} (continue with --resume)"
        return "no checkpoint had been saved yet"

    def save() -> None:
        nonlocal saved_step
        if saved_step == pos.step:
            return
        loop_state = {
            "step": pos.step,
            "epoch": pos.epoch,
            "batch": pos.batch,
            "best": best,
            "best_step": best_step,
            "last_eval": last_eval,
            "total_steps": total,
        }
        if is_main:
            with _writing(run.state, pos.step, kept()):
                ckpt.save({"task": task.state_dict(), "loop": loop_state, "rng": capture_rng()}, pos.step)
            saved_step = pos.step
            # The state file is complete in itself; last.safetensors is its exported model, written after it.
            with _writing(run.last, pos.step, kept()):
                task.export(run.last, {"step": str(pos.step), "epoch": str(pos.epoch)})
        saved_step = pos.step

    def export_unvalidated_best() -> None:
        """A run that stops before its first validation still leaves a best.safetensors (its current model)."""
        if is_main and cfg.best_metric and best is None and saved_step == pos.step:
            with _writing(run.best, pos.step, kept()):
                task.export(run.best, {"step": str(pos.step), "epoch": str(pos.epoch), "val": "none yet"})

    def evaluate() -> None:
        nonlocal best, best_step, last_eval
        last_eval = {k: json_value(v) for k, v in task.evaluate().items()}
        if not last_eval:
            return
        record("val", pos.step, epoch=pos.epoch, **last_eval)
        line = f"step {pos.step}/{total} epoch {pos.epoch + 1}: val {_fmt(last_eval)}"
        value = last_eval.get(cfg.best_metric) if cfg.best_metric else None
        if value is not None and (best is None or (value > best if cfg.best_mode == "max" else value < best)):
            with _writing(run.best, pos.step, kept()):
                task.export(run.best, {"step": str(pos.step), f"val_{cfg.best_metric}": repr(value)})
            best, best_step = value, pos.step
            line += f"  (new best {cfg.best_metric})"
        say(line)
        if time.perf_counter() - last_plot[0] > PLOT_INTERVAL_S:
            draw_curves()

    def draw_curves() -> None:
        if not is_main or not run.metrics.is_file():  # nothing to plot yet
            return
        last_plot[0] = time.perf_counter()
        try:
            plot_curves(run.metrics, run.curves)
        except Exception as e:  # a plot must never stop training
            say(f"warning: could not draw {run.curves}: {e}")

    def result(status: str, exit_code: int = 0) -> FitResult:
        if pos.step > 0:
            save()
            export_unvalidated_best()
        draw_curves()
        return FitResult(
            status, pos.step, total, pos.epoch, exit_code, best, best_step, last_eval, time.perf_counter() - t_start
        )

    window: dict[str, float] = {}  # sums of the step values since the last train record
    window_steps, window_seconds = 0, 0.0
    order_epoch, order = -1, None
    n_items = (total - pos.step) * cfg.batch_size
    bar_context = progress_bar(n_items, description, unit) if is_main else nullcontext(Bar(None, None))
    with InterruptGuard() as guard, bar_context as bar:
        while pos.step < total:
            if guard.signum is not None:
                name = signal.Signals(guard.signum).name
                r = result("interrupted", 128 + guard.signum)
                say(f"{name}: saved a resumable checkpoint at step {pos.step} in {run.state}")
                return r
            if cfg.stop_at is not None and pos.step >= cfg.stop_at:
                r = result("stopped")
                say(f"stopped at step {pos.step} (--stop-at); continue with --resume")
                return r
            if pos.batch >= spe:
                pos.epoch, pos.batch = pos.epoch + 1, 0
            if order_epoch != pos.epoch:
                order_epoch, order = pos.epoch, epoch_order(cfg.seed, pos.epoch, num_items)
            indices = order[pos.batch * cfg.batch_size : (pos.batch + 1) * cfg.batch_size]

            t0 = time.perf_counter()
            values = task.train_step(indices, pos.step)
            window_seconds += time.perf_counter() - t0
            loss = float(values["loss"])
            if not math.isfinite(loss):
                kept = (
                    f"the last good checkpoint (step {saved_step}) is kept in {run.state}"
                    if saved_step
                    else "no checkpoint had been saved yet"
                )
                raise MaskgitError(
                    f"loss is {loss} at step {pos.step + 1} (epoch {pos.epoch + 1}): training "
                    f"stopped; {kept}. Try a lower --lr or --precision fp32"
                )
            pos.step, pos.batch = pos.step + 1, pos.batch + 1
            bar.advance(len(indices))
            bar.update(info=f"step {pos.step}/{total} loss {loss:.4f}")

            for k, v in values.items():
                window[k] = window.get(k, 0.0) + float(v)
            window_steps += 1
            if pos.step % cfg.log_every == 0 or pos.step == total:
                means = {k: v / window_steps for k, v in window.items()}
                speed = window_steps * cfg.batch_size / max(window_seconds, 1e-9)  # training steps only
                record("train", pos.step, epoch=pos.epoch, **means, **{f"{unit}_per_s": speed})
                if not tty:
                    say(f"step {pos.step}/{total} epoch {pos.epoch + 1}: {_fmt(means)} ({speed:.1f} {unit}/s)")
                window, window_steps, window_seconds = {}, 0, 0.0

            epoch_end = pos.batch == spe
            done = pos.step >= total
            if (cfg.eval_every and pos.step % cfg.eval_every == 0) or (not cfg.eval_every and epoch_end) or done:
                evaluate()
                save()
            elif cfg.save_every and pos.step % cfg.save_every == 0:
                save()
    return result("finished")
