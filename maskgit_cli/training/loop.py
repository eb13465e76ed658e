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
- **Learning rate**: a pure function of the step (:class:`~maskgit_cli.training.optim.WarmupCosine`, which the
  task applies), so the schedule's whole state is the step counter and a resumed run continues the schedule
  instead of restarting it.
- **Checkpoints** (:class:`Checkpointer`): one self-contained ``state.safetensors`` without pickle: every
  tensor (model weights, optimizer moments, EMA weights, RNG states as uint8 tensors) is a safetensors
  tensor, and the nesting around them (optimizer param groups, step, epoch, position inside the epoch,
  best score) is JSON in the file's metadata. Every file is written under a temporary name and renamed into
  place, one at a time, so a crash (even mid-write) leaves the previous checkpoint whole and consistent.
- **Stopping**: after ``max_steps`` / ``epochs``; ``stop_at=N`` stops after step N exactly as an
  interruption does (checkpoint, then return); a :func:`deadline` (`maskgit fit --time-budget`) stops at the
  last step boundary that leaves time for a final validation and checkpoint before it (status ``out of time``:
  best.safetensors is the best model so far, and the run resumes exactly as after ``stop_at``: the deadline
  stops the run, it does not shorten its learning-rate schedule); SIGINT/SIGTERM finish the current step, save a
  resumable checkpoint and return exit code 130/143 (a second signal aborts at once); a NaN/inf loss raises
  :class:`MaskgitError` and leaves the last good checkpoint untouched. A run stopped before its first
  validation also exports its model as ``best.safetensors`` (metadata ``val = "none yet"``), so the later
  steps have a model file to load; the first validation replaces it.
- **Write errors** (a full disk, no permission): :class:`~maskgit_cli.training.run.SaveError`, one line naming
  the file; the previous
  checkpoint stays whole (atomic writes) and resumable.
- **One training per run folder**: the folder is locked (:meth:`RunDir.start`) until :func:`fit` returns.
- **Logging**: a Rich progress bar (img/s and the current loss), ``metrics.jsonl`` and ``curves.png``.

Exact resume: on CPU, a run stopped at step N and resumed ends with bit-identical weights to the same run
without the interruption, provided the task keeps all of its randomness in torch generators that it
returns from ``state_dict`` (or in the global torch/numpy/python RNGs, which the loop saves itself).
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import Bar, log, progress_bar
from maskgit_cli.training.optim import epoch_order
from maskgit_cli.training.run import MetricsLogger, RunDir, json_value, writing
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
        ``step`` (e.g. with :meth:`~maskgit_cli.training.optim.WarmupCosine.apply`)."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (may be empty). Must not consume the training RNGs."""

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume besides the loop's own state: models, optimizers, EMA weights, generators.
        Nested dicts/lists of tensors and JSON scalars (optimizer.state_dict() is fine as it is)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self, path: Path, metadata: dict[str, str]) -> None:
        """Write the model file other commands load (e.g. with ``weights.save_model``)."""


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
# A deadline (`maskgit fit --time-budget`)


@dataclass(frozen=True)
class Deadline:
    """When a run must be over (a :func:`time.perf_counter` value), its final validation and checkpoint included,
    and what they are expected to cost (``reserve`` seconds) until the run has timed one of its own."""

    at: float
    reserve: float = 0.0


_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("deadline", default=None)


@contextmanager
def deadline(at: float | None, reserve: float = 0.0) -> Iterator[None]:
    """Every :func:`fit` inside stops at a step boundary in time to validate, save and return by ``at`` (a
    :func:`time.perf_counter` value; None: no deadline). A stop, like ``stop_at``: not a setting of the run, so
    config.json and the learning-rate schedule are those of the run without it."""
    token = _DEADLINE.set(None if at is None else Deadline(at, reserve))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


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

    def is_better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` of the best metric beats ``best`` (None: nothing to beat yet)."""
        return best is None or (value > best if self.best_mode == "max" else value < best)

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
    status: str  # "finished" | "stopped" (stop_at) | "interrupted" (signal) | "out of time" (a deadline)
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
        # best.safetensors once a validation chose it; before any validation it is only a copy of the last model
        weights = run.best if self.best is not None and run.best.exists() else run.last
        return {
            "run": str(run.path),
            "status": self.status,
            "exit_code": self.exit_code,
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch + 1,  # 1-based, as the log and metrics.jsonl count
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


@dataclass
class _Window:
    """The step values since the last train record of metrics.jsonl: their sums, the steps, the training seconds."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0

    def add(self, values: dict[str, float], seconds: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.steps += 1
        self.seconds += seconds

    def means(self) -> dict[str, float]:
        return {k: v / self.steps for k, v in self.sums.items()}


def _fmt(values: dict[str, Any]) -> str:
    """'loss 0.1234 acc 0.5': floats with 4 significant digits."""
    return " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


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
        loop = _Loop(task, run, num_items, cfg, resume, unit, is_main)
        items_left = (loop.total - loop.pos.step) * cfg.batch_size
        bar_context = progress_bar(items_left, description, unit) if is_main else nullcontext(Bar(None, None))
        with InterruptGuard() as guard, bar_context as bar:
            while loop.pos.step < loop.total:
                if guard.signum is not None:
                    return loop.interrupted(guard.signum)
                if cfg.stop_at is not None and loop.pos.step >= cfg.stop_at:
                    return loop.stopped()
                if loop.out_of_time():
                    return loop.timed_out()
                start = time.perf_counter()
                indices = loop.next_batch()
                loss = loop.train_step(indices)
                bar.advance(len(indices))
                bar.update(info=f"step {loop.pos.step}/{loop.total} loss {loss:.4f}")
                loop.log_train()
                loop.step_seconds = time.perf_counter() - start
                loop.evaluate_and_save()
        return loop.result("finished")
    finally:
        run.unlock(remove=True)  # no .lock left behind (a waiting start locks whichever file is current)


class _Loop:
    """One call of :func:`fit`: where the run stands (position, best score, last validation, last save) and the
    steps of its loop, in the order they run."""

    def __init__(
        self, task: TrainTask, run: RunDir, num_items: int, cfg: LoopConfig, resume: bool, unit: str, is_main: bool
    ):
        self.task, self.run, self.cfg, self.unit, self.is_main = task, run, cfg, unit, is_main
        self.num_items = num_items
        self.steps_per_epoch = cfg.steps_per_epoch(num_items)
        self.total = cfg.total_steps(num_items)
        self.checkpointer = Checkpointer(run.state)
        self.pos = _Position()
        self.best: float | None = None  # the best value of cfg.best_metric so far ...
        self.best_step: int | None = None  # ... and its step
        self.last_eval: dict[str, float] = {}
        self.evaluated_step: int | None = None  # the step last validated in this call
        self.saved_step: int | None = None  # the step state.safetensors holds (None: none saved)
        if resume:
            self.resume()
        self.metrics = (
            MetricsLogger(run.metrics, keep_until_step=self.pos.step if resume else None) if is_main else None
        )
        self.window = _Window()
        self.order_epoch, self.order = -1, None  # the data order of one epoch, drawn when it starts
        self.t_start = time.perf_counter()
        self.deadline = _DEADLINE.get()
        self.step_seconds = 0.0  # the last step's wall time (with its logging) ...
        self.close_seconds: float | None = None  # ... and the last validation's with its checkpoint (None: none yet)
        self.last_plot = -math.inf  # when curves.png was last drawn (drawing takes ~0.5 s: at most once a minute)
        self.tty = sys.stderr.isatty()

    def say(self, message: str) -> None:
        if self.is_main:
            log(message)

    def record(self, kind: str, step: int, **values: Any) -> None:
        if self.metrics is not None:
            self.metrics.log(kind, step, **values)

    def resume(self) -> None:
        """Restore the task, the loop's position and scores, and the RNGs from the run's state file."""
        state = self.checkpointer.load()
        self.task.load_state_dict(state["task"])
        saved = state["loop"]
        self.pos = _Position(saved["step"], saved["epoch"], saved["batch"])
        self.best, self.best_step, self.last_eval = saved["best"], saved["best_step"], saved["last_eval"]
        self.saved_step = self.pos.step
        restore_rng(state["rng"])
        if saved.get("total_steps") not in (None, self.total):
            self.say(
                f"run length changed from {saved['total_steps']} to {self.total} steps: the learning-rate schedule "
                "follows the new length from here on"
            )
        pos = self.pos
        self.say(
            f"resuming {self.run.path} at step {pos.step}/{self.total} (epoch {pos.epoch + 1}, batch {pos.batch}/"
            f"{self.steps_per_epoch})"
        )

    def next_batch(self) -> torch.Tensor:
        """The dataset positions of the next step, in its epoch's order (the next epoch after the last full batch)."""
        pos, size = self.pos, self.cfg.batch_size
        if pos.batch >= self.steps_per_epoch:
            pos.epoch, pos.batch = pos.epoch + 1, 0
        if self.order_epoch != pos.epoch:
            self.order_epoch, self.order = pos.epoch, epoch_order(self.cfg.seed, pos.epoch, self.num_items)
        return self.order[pos.batch * size : (pos.batch + 1) * size]

    def train_step(self, indices: torch.Tensor) -> float:
        """One step of the task; its values join the log window. Returns the loss; a NaN/inf loss stops the run."""
        t0 = time.perf_counter()
        values = self.task.train_step(indices, self.pos.step)
        seconds = time.perf_counter() - t0
        loss = float(values["loss"])
        if not math.isfinite(loss):
            kept = (
                f"the last good checkpoint (step {self.saved_step}) is kept in {self.run.state}"
                if self.saved_step
                else "no checkpoint had been saved yet"
            )
            raise MaskgitError(
                f"loss is {loss} at step {self.pos.step + 1} (epoch {self.pos.epoch + 1}): training "
                f"stopped; {kept}. Try a lower --lr or --precision fp32"
            )
        self.pos.step, self.pos.batch = self.pos.step + 1, self.pos.batch + 1
        self.window.add(values, seconds)
        return loss

    def log_train(self) -> None:
        """Every ``log_every`` steps and at the last: the window's means as a train record of metrics.jsonl (and a
        line on stderr when it is not a terminal, where the progress bar shows them)."""
        pos, window = self.pos, self.window
        if pos.step % self.cfg.log_every and pos.step != self.total:
            return
        means = window.means()
        speed = window.steps * self.cfg.batch_size / max(window.seconds, 1e-9)  # training steps only
        self.record("train", pos.step, epoch=pos.epoch + 1, **means, **{f"{self.unit}_per_s": speed})
        if not self.tty:
            self.say(f"step {pos.step}/{self.total} epoch {pos.epoch + 1}: {_fmt(means)} ({speed:.1f} {self.unit}/s)")
        self.window = _Window()

    def evaluate_and_save(self) -> None:
        """Validate and save every ``eval_every`` steps (0: at the end of every epoch) and at the end; save alone
        every ``save_every`` steps."""
        cfg, step = self.cfg, self.pos.step
        epoch_end = self.pos.batch == self.steps_per_epoch
        if (cfg.eval_every and step % cfg.eval_every == 0) or (not cfg.eval_every and epoch_end) or step >= self.total:
            start = time.perf_counter()
            self.evaluate()
            self.save()
            self.close_seconds = time.perf_counter() - start
        elif cfg.save_every and step % cfg.save_every == 0:
            self.save()

    def evaluate(self) -> None:
        """The task's validation: a val record and line; a new best ``best_metric`` exports best.safetensors."""
        self.last_eval = {k: json_value(v) for k, v in self.task.evaluate().items()}
        self.evaluated_step = self.pos.step
        if not self.last_eval:
            return
        pos, metric = self.pos, self.cfg.best_metric
        self.record("val", pos.step, epoch=pos.epoch + 1, **self.last_eval)
        line = f"step {pos.step}/{self.total} epoch {pos.epoch + 1}: val {_fmt(self.last_eval)}"
        value = self.last_eval.get(metric) if metric else None
        if value is not None and self.cfg.is_better(value, self.best):
            with writing(self.run.best, pos.step, self.kept()):
                self.task.export(self.run.best, {"step": str(pos.step), f"val_{metric}": repr(value)})
            self.best, self.best_step = value, pos.step
            line += f"  (new best {metric})"
        self.say(line)
        if time.perf_counter() - self.last_plot > PLOT_INTERVAL_S:
            self.draw_curves()

    def kept(self) -> str:
        """What a failed write leaves: the state file as it was last saved."""
        if self.saved_step:
            return f"{self.run.state} still holds step {self.saved_step} (continue with --resume)"
        return "no checkpoint had been saved yet"

    def loop_state(self) -> dict[str, Any]:
        """The loop's part of the state file (JSON values)."""
        pos = self.pos
        return {
            "step": pos.step,
            "epoch": pos.epoch,
            "batch": pos.batch,
            "best": self.best,
            "best_step": self.best_step,
            "last_eval": self.last_eval,
            "total_steps": self.total,
        }

    def save(self) -> None:
        """Write the state file, then last.safetensors (its model); nothing when this step is saved already."""
        pos = self.pos
        if self.saved_step == pos.step:
            return
        if self.is_main:
            with writing(self.run.state, pos.step, self.kept()):
                state = {"task": self.task.state_dict(), "loop": self.loop_state(), "rng": capture_rng()}
                self.checkpointer.save(state, pos.step)
            self.saved_step = pos.step
            # The state file is complete in itself; last.safetensors is its exported model, written after it.
            with writing(self.run.last, pos.step, self.kept()):
                self.task.export(self.run.last, {"step": str(pos.step), "epoch": str(pos.epoch)})
        self.saved_step = pos.step

    def draw_curves(self) -> None:
        if not self.is_main or not self.run.metrics.is_file():  # nothing to plot yet
            return
        self.last_plot = time.perf_counter()
        try:
            plot_curves(self.run.metrics, self.run.curves)
        except Exception as e:  # a plot must never stop training
            self.say(f"warning: could not draw {self.run.curves}: {e}")

    def result(self, status: str, exit_code: int = 0) -> FitResult:
        """Save, draw the curves and sum up. A run stopped before its first validation also exports its current
        model as best.safetensors (metadata ``val = "none yet"``), so that the later steps have one to load."""
        pos = self.pos
        if pos.step > 0:
            self.save()
            if self.is_main and self.cfg.best_metric and self.best is None:
                with writing(self.run.best, pos.step, self.kept()):
                    self.task.export(self.run.best, {"step": str(pos.step), "epoch": str(pos.epoch), "val": "none yet"})
        self.draw_curves()
        seconds = time.perf_counter() - self.t_start
        return FitResult(status, pos.step, self.total, pos.epoch, exit_code, self.best, self.best_step, self.last_eval,
                         seconds)  # fmt: skip

    def stopped(self) -> FitResult:
        """``stop_at`` reached: what an interruption does, without the signal."""
        r = self.result("stopped")
        self.say(f"stopped at step {self.pos.step} (--stop-at); continue with --resume")
        return r

    def out_of_time(self) -> bool:
        """Whether one more step, then a validation and checkpoint, would end after the :func:`deadline` (never
        before the run's first step: it leaves a model)."""
        if self.deadline is None or self.pos.step == 0:
            return False
        close = self.deadline.reserve if self.close_seconds is None else self.close_seconds
        return time.perf_counter() + self.step_seconds + close > self.deadline.at

    def timed_out(self) -> FitResult:
        """The deadline reached: validate (unless this step was), save and sum up, as ``stop_at`` does."""
        step = self.pos.step
        if self.evaluated_step != step:
            self.evaluate()
        r = self.result("out of time")
        self.say(
            f"out of time at step {step}/{self.total}: validated and saved; the run resumes from here with the same "
            f"learning-rate schedule (--resume)"
        )
        return r

    def interrupted(self, signum: int) -> FitResult:
        """SIGINT/SIGTERM received: the step finished, save; exit code 128 + the signal's number."""
        r = self.result("interrupted", 128 + signum)
        self.say(
            f"{signal.Signals(signum).name}: saved a resumable checkpoint at step {self.pos.step} in {self.run.state}"
        )
        return r
