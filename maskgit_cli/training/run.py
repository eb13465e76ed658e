"""A training run's folder ``runs/NAME/`` and its settings: config.json (checked on resume), metrics.jsonl, the
one-line errors of a file that cannot be written, and how the settings of a run are resolved from the command line,
a TOML file and the run being resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from maskgit_cli.errors import MaskgitError, OptionError, option_values, require_file, write_error_reason
from maskgit_cli.viz import read_jsonl
from maskgit_cli.weights import atomic_path

# config.json keys that set the run's length. They may change on resume (to extend or shorten a run): the LR
# schedule then follows the new length from the resumed step on, so the run is no longer identical to an
# uninterrupted one.
RUN_LENGTH_KEYS = ("train.max_steps", "train.epochs")
# config.json keys that every trainer lets change on resume: they do not change the trained weights.
RESUME_MAY_DIFFER = (
    *RUN_LENGTH_KEYS,
    "train.stop_at",
    "train.device",
    "train.eval_every",
    "train.save_every",
    "train.log_every",
    "train.val_batch_size",
)

# ---------------------------------------------------------------------------------------------------------
# Run directory, config check and metrics


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _read_pid(fd: int) -> str:
    """The pid written in a lock file, or "unknown" (not written yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _missing_folders(path: Path) -> list[Path]:
    """The folders that ``path.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


class RunDir:
    """The files of one training run, ``runs/NAME/``.

    A run folder is used by one training at a time: :meth:`start` takes an exclusive lock on ``runs/NAME/.lock``
    (which holds the pid of its holder) and :func:`~maskgit_cli.training.loop.fit` releases it when it returns;
    ``with run:`` releases it on the way out too (e.g. when the trainer fails between the two).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    last = property(lambda self: self.path / "last.safetensors")
    best = property(lambda self: self.path / "best.safetensors")
    state = property(lambda self: self.path / "state.safetensors")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    curves = property(lambda self: self.path / "curves.png")
    config = property(lambda self: self.path / "config.json")
    lock_file = property(lambda self: self.path / ".lock")

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    @property
    def locked(self) -> bool:
        """Whether this process holds the run folder's lock (through this object)."""
        return self._lock_fd is not None

    def lock(self) -> None:
        """Take the run folder (which must exist) for this process: an exclusive, non-blocking ``flock`` on
        ``.lock``, into which the holder's pid is written. Held already: nothing to do; held by another process:
        a MaskgitError naming it."""
        if self._lock_fd is not None:
            return
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise MaskgitError(
                    f"{self.path} is in use by another training (pid {holder}); wait for it or choose another -o"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # A failed start may remove the lock file it created between our open and flock: lock the current file.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.lock_file))
            except OSError:
                current = False
            if current:
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # the pid is for the message above; the lock works without it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self, remove: bool = False) -> None:
        """Release the lock if this object holds it (``remove``: delete the lock file first)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.lock_file.unlink()
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicitly: forked children may share the descriptor
        finally:
            os.close(fd)

    def start(self, config: dict[str, Any], resume: bool, may_differ: tuple[str, ...] = ()) -> None:
        """Lock the run folder, then create the run (writing config.json) or check that ``config`` matches the
        run being resumed. The lock is held until :meth:`unlock` (``fit`` calls it when it returns).

        ``may_differ``: dotted config keys allowed to change on resume (e.g. the device or ``stop_at``); any
        other difference is an error, because the resumed run would not be the run that was interrupted.

        On any error the lock is released and the folders this call created are removed again.
        """
        if self.path.exists() and not self.path.is_dir():
            raise MaskgitError(f"{self.path}: exists and is not a folder")
        if resume and not self.path.is_dir():
            raise MaskgitError(f"{self.path}: nothing to resume (no {self.state.name}); start the run without --resume")
        made = _missing_folders(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock()
            self._start(config, resume, may_differ)
        except BaseException:
            self.unlock(remove=bool(made))
            for folder in made:  # deepest first; a folder that is not empty stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def _start(self, config: dict[str, Any], resume: bool, may_differ: tuple[str, ...]) -> None:
        if not resume:
            existing = [p.name for p in (self.state, self.last, self.best) if p.exists()]
            if existing:
                raise MaskgitError(
                    f"{self.path} already holds a training run ({', '.join(existing)}); pass --resume "
                    "to continue it, or choose another output folder"
                )
            self.metrics.unlink(missing_ok=True)
            self.write_config(config)
            return
        if not self.state.is_file():
            raise MaskgitError(f"{self.path}: nothing to resume (no {self.state.name}); start the run without --resume")
        try:
            saved = json.loads(self.config.read_text())
        except (OSError, ValueError) as e:
            raise MaskgitError(f"{self.config}: cannot read the run's settings ({e})") from None
        old, new = _flatten(saved), _flatten(json.loads(json.dumps(config)))
        diffs = [
            f"{k}: {old.get(k)!r} (saved) vs {new.get(k)!r} (now)"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and not any(k == m or k.startswith(m + ".") for m in may_differ)
        ]
        if diffs:
            raise MaskgitError(
                f"--resume {self.path}: settings differ from the interrupted run, so it would not "
                f"continue exactly; use the same options ({'; '.join(diffs[:6])}"
                f"{'; ...' if len(diffs) > 6 else ''})"
            )
        self.write_config(config)

    def write_config(self, config: dict[str, Any]) -> None:
        with naming(self.config), atomic_path(self.config) as tmp:
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def naming(path: Path):
    """An OSError while writing ``path`` names ``path`` (not its temporary file, nor nothing as a failed write
    does), so that the command line's one-line error says which file could not be written."""
    try:
        yield
    except OSError as e:
        if isinstance(e, MaskgitError) or e.filename == str(path):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e


class SaveError(MaskgitError, OSError):
    """A file of the run could not be written (a full disk, no permission): a user-facing error (one line on the
    command line) that is also an OSError, what it is underneath."""


@contextlib.contextmanager
def writing(path: Path, step: int, kept: str):
    """Turn a failed write of ``path`` (at ``step``) into a :class:`SaveError` saying what is ``kept``."""
    try:
        yield
    except (OSError, SafetensorError) as e:
        if isinstance(e, MaskgitError):
            raise
        raise SaveError(
            f"{path}: cannot write it at step {step} ({write_error_reason(e)}); training stopped and {kept}"
        ) from e


def json_value(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON: non-finite numbers are written as null
    return v


class MetricsLogger:
    """Appends one JSON object per line to ``metrics.jsonl``: ``{"kind": "train"|"val", "step": ..., ...}``.

    ``keep_until_step``: on resume, records written after the checkpoint (by the part of the interrupted run
    that is about to be redone) are dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(self, path: str | Path, keep_until_step: int | None = None):
        self.path = Path(path)
        if keep_until_step is not None and self.path.exists():
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= keep_until_step]
            with naming(self.path), atomic_path(self.path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def log(self, kind: str, step: int, **values: Any) -> dict[str, Any]:
        record = {"kind": kind, "step": step, **{k: json_value(v) for k, v in values.items()}}
        with naming(self.path), self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return record


def config_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


# ---------------------------------------------------------------------------------------------------------
# A run's settings: options given on the command line win over a TOML file or the run being resumed


@dataclass
class RunSettings:
    """What a trainer is asked to do: its config, the run folder, the data paths, and whether it resumes."""

    config: Any  # the trainer's config dataclass
    output: Path
    data: dict[str, Path | None]  # e.g. {"train": ..., "val": ...}: given on the command line or saved in the run
    resume: bool


def read_toml(
    path, names: set[str], types: dict[str, Any] | None = None, check: Callable[[str, Any], str | None] | None = None
) -> dict[str, Any]:
    """Settings from a TOML file (top level or a [train] table); unknown names are one error listing the valid.

    Each value is checked as its option would be: ``check(name, value)`` (the command line's: the option's own
    parsing, with its message; None where it has no such option), then its type in ``types`` (the config
    dataclass's: a whole number, a finite number, text, true/false, a list). A bad value is one
    :class:`OptionError` naming the file and the setting (exit 2, as a bad option value)."""
    path = Path(path)
    require_file(path, "--config", "a TOML file")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise MaskgitError(f"--config {path}: not valid TOML ({e})") from None
    values = doc.get("train", doc)
    if not isinstance(values, dict):
        raise OptionError(f"--config {path}: train = {values!r}: expected a [train] table of settings")
    unknown = sorted(set(values) - names)
    if unknown:
        raise MaskgitError(f"--config {path}: unknown settings {unknown}; valid: {sorted(names)}")
    checked = {}
    for name, value in values.items():
        problem = check(name, value) if check else None
        if problem is None and types is not None:
            problem, value = _type_problem(value, types[name])
        if problem:
            raise OptionError(f"--config {path}: {name} = {value!r}: {problem}")
        checked[name] = value
    return checked


def _type_problem(value: Any, hint: Any) -> tuple[str | None, Any]:
    """(what is wrong with ``value`` for a field of type ``hint``, or None; the value, an int made a float for a
    float field)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]  # X | None: TOML has no null
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, list) or len(value) != len(items):
            return f"expected a list of {len(items)} values", value
        found = [_type_problem(v, h) for v, h in zip(value, items)]
        problem = next((p for p, _ in found if p), None)
        return problem, value if problem else [v for _, v in found]
    if hint is bool:
        return (None if isinstance(value, bool) else "expected true or false"), value
    if hint is int:
        return (None if isinstance(value, int) and not isinstance(value, bool) else "expected a whole number"), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return None, float(value)
        return "expected a finite number", value
    if hint is str:
        return (None if isinstance(value, str) else "expected text in quotes"), value
    return None, value


def resolve_run(
    config_cls: type,
    trainer: str,
    given: dict[str, Any],
    *,
    output: str | Path | None,
    resume: str | Path | None = None,
    data: dict[str, str | Path | None],
    toml: str | Path | None = None,
    check: Callable[[str, Any], str | None] | None = None,
) -> RunSettings:
    """The settings of a run of ``trainer`` from what was given on the command line (``given``: options given,
    None left out; ``data``: the data paths given).

    Resuming takes every setting and data path from the run's config.json (options given win; ``stop_at`` is never
    inherited) and refuses a run of another trainer. Otherwise a ``toml`` file (its values checked by ``check``, the
    command line's check of each option, and by type: :func:`read_toml`), then ``given``, override the defaults;
    the settings' own checks of these values are option errors (exit 2). ``max_steps`` given without ``epochs``
    sets the run's length alone.
    """
    given = dict(given)
    if resume is not None:
        resume = Path(resume)
        if output is not None and Path(output).resolve() != resume.resolve():
            raise MaskgitError(f"--resume {resume} and -o {output} name different runs")
        try:
            saved = json.loads((resume / "config.json").read_text())
        except (OSError, ValueError):
            raise MaskgitError(f"--resume {resume}: not a training run (no readable config.json)") from None
        if not isinstance(saved, dict) or saved.get("trainer") != trainer or not isinstance(saved.get("train"), dict):
            other = saved.get("trainer") if isinstance(saved, dict) else None
            raise MaskgitError(
                f"--resume {resume}: "
                + (f"is a `maskgit {other}` run" if other else "not a training run")
                + f", not a `maskgit {trainer}` run"
            )
        saved_data = saved.get("data") or {}
        paths = {
            k: v if v is not None else (Path(saved_data[k]) if saved_data.get(k) else None) for k, v in data.items()
        }
        try:
            config = config_cls(**{**saved["train"], "stop_at": None, **given})
        except TypeError as e:
            raise MaskgitError(f"--resume {resume}: its config.json does not fit this maskgit ({e})") from None
        return RunSettings(config, resume, paths, True)
    names, hints = {f.name for f in dataclasses.fields(config_cls)}, typing.get_type_hints(config_cls)
    values = read_toml(toml, names, hints, check) if toml is not None else {}
    values = {**values, **given}
    if "max_steps" in values and "epochs" not in values:
        values["epochs"] = None  # max_steps alone sets the length
    if output is None:
        raise MaskgitError("give the run folder with -o runs/NAME, or --resume RUN")
    with option_values():  # the settings' own checks of option (and --config) values: exit 2
        config = config_cls(**values)
    return RunSettings(config, Path(output), {k: None if v is None else Path(v) for k, v in data.items()}, False)
