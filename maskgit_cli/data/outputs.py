"""Output folders, written whole or not at all: the guard every command that writes a folder runs first
(:func:`check_output_folder`) and the writer that puts a folder in place only once it is complete
(:class:`FolderWriter`; :func:`writing` for several folders that appear together).

`maskgit inpaint` and `sweep` replace a folder whole (never mixing two runs' results); `maskgit masks` adds its
files to an existing folder, each replacing its namesake, and keeps the others. Either way an interruption, a bad
input or a full disk leaves every output folder as it was, and no staging folder behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from maskgit_cli.errors import MaskgitError


def blocker(output: Path) -> Path | None:
    """What keeps ``output`` from being a folder: itself when it is a file, or the nearest existing folder above it
    when that is a file; None when nothing does."""
    if output.exists() and not output.is_dir():
        return output
    above = next((p for p in output.parents if p.exists()), None)
    return above if above is not None and not above.is_dir() else None


def check_output_folder(output, overwrite: bool, inputs=()) -> Path:
    """The output folder of a command that writes a whole folder of results (inpaint, sweep).

    A folder that already holds files is refused (results of two runs must never mix), unless ``overwrite``, which
    replaces it whole once the new results are complete, and only when it is a results folder maskgit wrote
    (:func:`made_here`): nothing is deleted that the tool did not make. A folder that is, or holds, one of the
    ``inputs`` is refused in any case.
    """
    out = Path(output)
    remove_stale(out)
    stop = blocker(out)
    if stop == out:
        raise MaskgitError(f"-o {out}: exists and is not a folder")
    if stop is not None:
        raise MaskgitError(f"-o {out}: {stop} is a file, not a folder")
    resolved = out.resolve()
    for item in inputs:
        if item is None:
            continue
        item = Path(item).resolve()
        if item == resolved or resolved in item.parents:
            raise MaskgitError(f"-o {out}: holds the input {item}; choose another output folder")
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:  # replacing it whole would pull the folder from under us
        raise MaskgitError(f"-o {out}: is the current folder or holds it; name a folder for the results, e.g. -o out")
    if out.is_dir() and any(out.iterdir()):
        first = sorted(p.name for p in out.iterdir())[0]
        if not overwrite:
            raise MaskgitError(
                f"-o {out}: already holds results (e.g. {first}); pass --overwrite to replace the whole folder, or "
                "choose another output folder (results of two runs are never mixed)"
            )
        if not made_here(out):
            raise MaskgitError(
                f"-o {out}: holds files maskgit did not write (e.g. {first}; no report.json of `maskgit inpaint` or "
                "sweep.json of `maskgit sweep`); --overwrite replaces only a results folder: choose another output "
                "folder"
            )
    return out


# The file by which a command recognises a results folder it wrote (what --overwrite may replace), and the keys
# that file holds: inpaint's report.json, sweep's sweep.json.
OWN_REPORTS = {"report.json": ("settings", "images"), "sweep.json": ("cells", "best")}
_REPORT_BYTES = 1 << 29  # a larger one is nobody's report


def made_here(folder: Path) -> bool:
    """Whether ``folder`` is a results folder of inpaint or sweep: it holds one of :data:`OWN_REPORTS`, a JSON
    object with that report's keys."""
    for name, keys in OWN_REPORTS.items():
        report = folder / name
        try:
            if not report.is_file() or report.stat().st_size > _REPORT_BYTES:
                continue
            doc = json.loads(report.read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(doc, dict) and all(k in doc for k in keys):
            return True
    return False


class FolderWriter:
    """One output folder, written into a staging folder and put in place only when complete.

    ``merge`` False (inpaint, sweep): the staging folder, beside the output, replaces the output folder whole.
    ``merge`` True (`maskgit masks`): into an existing folder the staged files (:meth:`save`) move one by one,
    each replacing its namesake, the folder's other files kept (the staging folder sits inside it: renames within
    one file system); a new folder is put in place whole. Parent folders the writer made are removed again when it
    fails.

    ``what`` (e.g. "the masks"): an OSError becomes one MaskgitError naming the output folder, what could not be
    written and how much was replaced; without it the OSError goes on, naming the file at its real place.

    ``with FolderWriter(out) as tmp:`` writes into ``tmp`` and commits when the block ends without an error.
    """

    def __init__(self, output, merge: bool = False, what: str | None = None):
        self.output = Path(output)
        remove_stale(self.output)
        self.new = not self.output.is_dir()
        self.merge = merge and not self.new
        self.what = what
        home = self.output if self.merge else self.output.parent
        self.tmp = home / f".{self.output.name}.partial-{os.getpid()}"
        self.made = [p for p in self.output.parents if not p.exists()][::-1]  # missing parents, outermost first
        self.names: list[str] = []  # the files staged with save(), in order
        self.committed = False
        self._signals = contextlib.ExitStack()

    def __enter__(self) -> Path:
        try:
            return self.open()
        except BaseException:
            self.discard()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
            elif self.what is None and isinstance(exc, OSError) and str(exc.filename).startswith(str(self.tmp)):
                exc.filename = str(self.output) + str(exc.filename)[len(str(self.tmp)) :]  # name the real place
        finally:
            self.discard()

    def open(self) -> Path:
        """Make the (empty) staging folder and return it."""
        self._signals.enter_context(_sigterm_interrupts())  # a SIGTERM removes the staging folder too
        with self._errors():
            self.output.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir()
        return self.tmp

    def save(self, name: str, pixels: np.ndarray, **options) -> None:
        """Stage the image file ``name`` (``options``: PIL's writer options)."""
        with self._errors():
            Image.fromarray(pixels).save(self.tmp / name, **options)
        self.names.append(name)

    def commit(self) -> None:
        """Put the staged folder (or, merging, its files) in place."""
        if self.merge:
            for moved, name in enumerate(self.names):
                with self._errors(moved):
                    os.replace(self.tmp / name, self.output / name)
        else:
            with self._errors():
                self._replace()
        self.committed = True

    def _replace(self) -> None:
        """The staging folder becomes the output folder; a previous one is moved aside first and put back if that
        fails, removed once it worked."""
        old = self.output.with_name(f".{self.output.name}.old-{os.getpid()}")
        moved = False
        try:
            if self.output.exists():
                os.replace(self.output, old)
                moved = True
            os.replace(self.tmp, self.output)
        except OSError:
            if moved and not self.output.exists():
                os.replace(old, self.output)  # put the previous results back
            raise
        shutil.rmtree(old, ignore_errors=True)

    def undo(self) -> None:
        """Remove a new folder this writer put in place (when a folder written together with it fails)."""
        if self.new and self.committed:
            shutil.rmtree(self.output, ignore_errors=True)
            self.committed = False

    def discard(self) -> None:
        """Remove what is left of the staging folder, and, if nothing was put in place, the parents made for it."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        if not self.committed:
            for folder in reversed(self.made):  # innermost first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        self._signals.close()

    @contextlib.contextmanager
    def _errors(self, moved: int = 0):
        if self.what is None:
            yield
            return
        try:
            yield
        except OSError as e:
            done = f"{moved} of its {len(self.names)} files were replaced" if moved else "nothing was written"
            raise MaskgitError(f"{self.output}: cannot write {self.what} there ({e.strerror or e}); {done}.") from e


@contextlib.contextmanager
def writing(*writers: FolderWriter):
    """Several folders that appear together (masks and masked images): yields their staging folders; all are put
    in place once the block ends without an error, else none (a new one already in place is removed again)."""
    try:
        yield [w.open() for w in writers]
        for w in writers:
            w.commit()
    except BaseException:
        for w in writers:
            w.undo()
        raise
    finally:
        for w in reversed(writers):  # a later folder may sit in one an earlier one created
            w.discard()


# ---------------------------------------------------------------------------------------------------------
# What an interrupted writer leaves: removed by the next one (SIGKILL), or not left at all (SIGTERM)


def _running(pid: int) -> bool:
    """Whether the process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale(output) -> None:
    """Remove what writers of ``output`` that were killed left: their staging folders ``.NAME.partial-PID`` (beside
    the output, or inside it when merging) and the previous results ``.NAME.old-PID`` moved aside while a folder was
    replaced (put back when the output is missing: the writer died between the two renames), for every PID that no
    longer runs. A running writer's are left alone."""
    output = Path(output)
    name = glob.escape(output.name)
    for home in (output.parent, output):
        if not home.is_dir():
            continue
        for kind in ("partial", "old"):
            for path in home.glob(f".{name}.{kind}-*"):
                pid = path.name.rpartition("-")[2]
                if not pid.isdigit() or int(pid) == os.getpid() or _running(int(pid)) or not path.is_dir():
                    continue
                with contextlib.suppress(OSError):
                    if kind == "old" and home == output.parent and not output.exists():
                        os.replace(path, output)  # the previous results, back in place
                    else:
                        shutil.rmtree(path)


@contextlib.contextmanager
def _sigterm_interrupts():
    """While a folder is written, SIGTERM interrupts like Ctrl-C, so that the staging folder is removed on the way
    out (only in the main thread, and only where SIGTERM still has its default action: a handler someone installed
    stays)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
