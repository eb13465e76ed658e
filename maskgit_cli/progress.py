"""Rich progress bars on stderr, with a speed column (items/s), used by every loop over data."""

from __future__ import annotations

import contextlib
import os
import sys
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


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, unit: str = "img") -> Iterator[Bar]:
    """A progress bar for ``total`` items; call ``bar.advance(batch_size)`` as work is done.

    Rendered live on a terminal; otherwise (CI, pipes) Rich prints the finished bar once. Set
    MASKGIT_NO_PROGRESS=1 to silence it.
    """
    if _disabled():
        yield Bar(None, None)
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
        disable=not sys.stderr.isatty() and os.environ.get("MASKGIT_FORCE_PROGRESS") != "1",
    )
    with progress:
        task = progress.add_task(description, total=total, unit=unit, info="")
        yield Bar(progress, task)


def log(message: str) -> None:
    """A progress/log line on stderr (results go to stdout); never wrapped, so log files stay one line per entry."""
    console.print(message, highlight=False, soft_wrap=True)
