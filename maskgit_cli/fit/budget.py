"""``maskgit fit --time-budget MINUTES``: each training stage as long as its share of the minutes allows.

The minutes are split over the stages (:data:`~maskgit_cli.fit.settings.BUDGET_SHARES`); what a stage leaves
unused goes to the stages after it, and what it overran is taken from them (:data:`MARGIN` of the minutes is kept
for writing the model folder). Before a training stage starts, a short
*probe* (:data:`PROBE_STEPS` steps and one validation of the same trainer, in a scratch run folder deleted after)
measures its setup, its seconds per step, what a validation with its checkpoint costs and what drawing its curves
costs; the stage then gets the
``max_steps`` that fill its share with :data:`VALIDATIONS` validations, and its warmup scaled with it (where no more
steps fit than the probe made, as on a short budget, the probe's run is kept as the stage's instead). The stage
itself is an ordinary run with those settings (resumable exactly), ended by the loop's own ``max_steps`` or, where
the machine got slower than the probe measured, by a :func:`~maskgit_cli.training.loop.deadline` at the end of its
share: the loop stops at a step boundary in time to validate and save (the stage is then done, "stopped by the time
budget" in fit.json and the card), so it always leaves a usable model and the fit keeps to its minutes.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maskgit_cli.fit.settings import budget_shares
from maskgit_cli.progress import log
from maskgit_cli.training.run import RunDir
from maskgit_cli.viz import plot_curves, read_jsonl

PROBE_STEPS = 5
VALIDATIONS = 2  # per budgeted stage: half way and at the end
MARGIN = 0.03  # of the budget, kept for writing the model folder and for steps slower than measured


class Clock:
    """The time budget of a fit (None: no budget) and what is spent of it, earlier calls included."""

    def __init__(self, minutes: float | None, spent_before: float = 0.0):
        self.total = None if minutes is None else minutes * 60.0
        self.spent_before = spent_before
        self.start = time.perf_counter()

    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self.start

    def share(self, stage: str, left: list[str]) -> float:
        """The seconds ``stage`` may take, of those left for the stages ``left`` (``stage`` first)."""
        return max(0.0, self.total * (1 - MARGIN) - self.spent()) * budget_shares(left)[stage]


@dataclass
class Probe:
    """What a trainer costs: before its loop (with its first step's extra), per step, per validation (with its
    checkpoint), and per drawing of curves.png (a run draws it at its first validation and at its end); and what the
    probe's run returned (its trainer's summary)."""

    setup: float
    step: float
    validation: float
    plot: float
    summary: dict = field(default_factory=dict)


def probe(run: Callable[[Path, dict], dict], options: dict, folder: Path) -> Probe:
    """Time ``run(folder, options)`` (a trainer) for :data:`PROBE_STEPS` steps (fewer where a
    :func:`~maskgit_cli.training.loop.deadline` stops it) and one validation in the run folder ``folder``, made
    afresh (kept: :func:`budgeted` says what becomes of it)."""
    shutil.rmtree(folder, ignore_errors=True)
    short = {**options, "max_steps": PROBE_STEPS, "eval_every": PROBE_STEPS, "warmup_steps": 0, "log_every": 1}
    start = time.perf_counter()
    summary = run(folder, short)
    loop, wall = summary["seconds"], time.perf_counter() - start
    run_dir = RunDir(folder)
    steps = [options["batch_size"] / r["img_per_s"] for r in read_jsonl(run_dir.metrics) if r["kind"] == "train"]
    start = time.perf_counter()
    plot_curves(run_dir.metrics, run_dir.curves)
    plot = time.perf_counter() - start
    step = _fast_step(steps)
    validation = max(0.0, loop - sum(steps) - 2 * plot)  # curves.png was drawn twice: at the validation, at the end
    return Probe(wall - loop + max(0.0, steps[0] - step), step, validation, plot, summary)


def _fast_step(steps: list[float]) -> float:
    """The seconds a step takes when the machine is not busier than it was at its quietest: the lower quartile of
    the steps after the first (which also warms up). Other jobs' load comes and goes: a stage planned for the slow
    steps would end early when it goes; planned for the fast ones it fills its share, and the loop's deadline stops
    it where the load comes back."""
    later = sorted(steps[1:] or steps)
    return later[(len(later) - 1) // 4]


def planned(options: dict, p: Probe, seconds: float) -> dict:
    """``options`` with the steps that fit in ``seconds`` after the probe ``p``'s setup, validations and curves (at
    least one step), the warmup the same share of them as in ``options``, and :data:`VALIDATIONS` validations."""
    fixed = p.setup + VALIDATIONS * p.validation + 2 * p.plot
    steps = max(1, int((seconds - fixed) / p.step))
    warmup = round(options["warmup_steps"] * steps / options["max_steps"])
    return {**options, "max_steps": steps, "warmup_steps": warmup, "eval_every": math.ceil(steps / VALIDATIONS)}


def budgeted(
    stage: str, run: Callable[[Path, dict], dict], options: dict, folder: Path, seconds: float
) -> tuple[dict | None, Probe]:
    """The options of ``stage`` that fill ``seconds``, measured by a probe in the run folder ``folder`` (then
    :func:`planned`; the folder is deleted), and the probe. None instead of the options where no more steps fit than
    the probe made: its run in ``folder`` (a short run of the stage's settings, validated) is then the stage's."""
    start = time.perf_counter()
    log(f"== fit {stage}: measuring {PROBE_STEPS} steps for the time budget ({seconds:.0f} s for this stage)")
    p = probe(run, options, folder)
    plan = planned(options, p, seconds - (time.perf_counter() - start))
    made = p.summary["step"]
    if plan["max_steps"] <= made:
        log(f"== fit {stage}: {p.step * 1000:.0f} ms a step: no more steps fit than the {made} measured, which stay")
        return None, p
    shutil.rmtree(folder, ignore_errors=True)
    log(
        f"== fit {stage}: {p.step * 1000:.0f} ms a step, {p.setup:.1f} s setup, {p.validation:.1f} s a validation: "
        f"{plan['max_steps']} steps"
    )
    return plan, p
