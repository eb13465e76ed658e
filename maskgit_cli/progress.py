"""Rich progress bars on stderr, with a speed column (items/s), used by every loop over data."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)


class SpeedColumn(ProgressColumn):
    """'123.4 img/s' from Rich's own moving-window speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return Text("-" if speed is None else f"{speed:,.1f} {unit}/s", style="progress.data.speed")


def _disabled() -> bool:
    return os.environ.get("MASKGIT_NO_PROGRESS") == "1"


class Bar:
    """Handle for one task of a progress display: ``advance(n)`` and ``update(**fields)``."""

    def __init__(self, progress: Progress | None, task_id):
        self._progress, self._task = progress, task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, description: str | None = None, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description, **fields)


class LineBar(Bar):
    """Progress for logs (stderr not a terminal: CI, `nohup`, `2> run.log`): one plain line every ``every``
    seconds and one at the end, e.g. ``tokenize: 120/300 img (40%), 41.2 img/s, 3 s, eta 4 s``."""

    def __init__(self, total: int | None, description: str, unit: str, every: float):
        super().__init__(None, None)
        self.total, self.description, self.unit, self.every = total, description, unit, every
        self.done, self.info = 0.0, ""
        self.start = self.last = time.monotonic()
        self.shown: tuple | None = None  # what the last line said (done, description, info): never said twice

    def advance(self, n: float = 1) -> None:
        self.done += n
        self._line_if_due()

    def update(self, description: str | None = None, **fields) -> None:
        """New description or info; a line when one is due, so that long batches still report (e.g. per step)."""
        self.description = description or self.description
        self.info = str(fields.get("info", self.info))
        self._line_if_due()

    def _line_if_due(self) -> None:
        if time.monotonic() - self.last >= self.every:
            self.line()

    def line(self) -> None:
        now = time.monotonic()
        self.last = now
        if self.shown == (self.done, self.description, self.info):
            return
        self.shown = (self.done, self.description, self.info)
        elapsed = now - self.start
        speed = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.description}: {self.done:,.0f}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({self.done / self.total:.0%})"
        parts.append(f"{speed:,.1f} {self.unit}/s")
        parts.append(f"{elapsed:.0f} s")
        if self.total and speed > 0 and self.done < self.total:
            parts.append(f"eta {(self.total - self.done) / speed:.0f} s")
        if self.info:
            parts.append(self.info)
        log(", ".join(parts))


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, unit: str = "img") -> Iterator[Bar]:
    """A progress bar for ``total`` items; call ``bar.advance(batch_size)`` as work is done.

    Rendered live on a terminal; otherwise (CI, pipes, log files) a plain line every few seconds
    (``MASKGIT_PROGRESS_EVERY``, default 5 s) and one at the end. MASKGIT_NO_PROGRESS=1 silences both.
    """
    if _disabled():
        yield Bar(None, None)
        return
    if not sys.stderr.isatty() and os.environ.get("MASKGIT_FORCE_PROGRESS") != "1":
        bar = LineBar(total, description, unit, float(os.environ.get("MASKGIT_PROGRESS_EVERY", "5")))
        yield bar
        bar.line()
        return
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, unit=unit, info="")
        yield Bar(progress, task)


def log(message: str) -> None:
    """A progress/log line on stderr (results go to stdout); never wrapped, so log files stay one line per entry."""
    console.print(message, highlight=False, soft_wrap=True)
