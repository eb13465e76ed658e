"""User-facing errors.

Library code raises :class:`MaskgitError` for anything a user can fix (a bad file, a wrong option value).
The CLI prints it as one line ``Error: ...`` and exits 1 (2 for an :class:`OptionError`, a bad option value, as for
a value the command line's parser refuses); ``MASKGIT_DEBUG=1`` shows the traceback.
"""

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path


class MaskgitError(Exception):
    """An expected, user-fixable error. The message is a complete sentence naming the file or option."""


class OptionError(MaskgitError):
    """A bad option value (or a --config setting), found after parsing: the CLI exits 2, as the README promises for
    bad option values."""


@contextlib.contextmanager
def option_values() -> Iterator[None]:
    """A :class:`MaskgitError` raised inside (by settings made from option values) is a bad option value: an
    :class:`OptionError` (exit 2)."""
    try:
        yield
    except OptionError:
        raise
    except MaskgitError as e:
        raise OptionError(str(e)) from e


def write_error_reason(e: BaseException) -> str:
    """Why a write failed, in a few words: 'No space left on device' from an OSError or from a safetensors write
    error ('... (os error 28)')."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    found = re.search(r"os error (\d+)", str(e))
    return os.strerror(int(found[1])) if found else (str(e).strip().splitlines() or [type(e).__name__])[0]


def require_file(path, label: str = "", expected: str = "a file") -> None:
    """Refuse a path that is not an existing file, in one line: ``[label ]PATH: no such file`` or
    ``[label ]PATH: is a folder, expected <expected>``.

    ``label`` is the option or role that named the path (e.g. ``Mask file``), ``expected`` what the file should be
    (e.g. ``a VQGAN weights file (.safetensors)``); every reader of a single file starts here.
    """
    path = Path(path)
    where = f"{label} {path}" if label else str(path)
    if path.is_dir():
        raise MaskgitError(f"{where}: is a folder, expected {expected}")
    if not path.is_file():
        raise MaskgitError(f"{where}: no such file")
