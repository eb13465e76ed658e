"""Option values checked after parsing, with the exit code of a value the parser refuses (2, as the README promises).

The settings check their own values (:mod:`maskgit_cli.decoding.settings`, the trainers' configs): here their
errors become :class:`~maskgit_cli.errors.OptionError` s (:func:`~maskgit_cli.errors.option_values`), and a ``--config`` TOML file's
settings are checked by the very options they stand for (:func:`toml_check`). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from maskgit_cli.errors import option_values


def inpaint_settings(**options):
    """:meth:`InpaintSettings.from_options` for the command line: a bad value exits 2 before anything is loaded."""
    from maskgit_cli.decoding.settings import InpaintSettings

    with option_values():
        return InpaintSettings.from_options(**options)


def toml_check(command: str) -> Callable[[str, Any], str | None]:
    """For :func:`maskgit_cli.training.run.read_toml`: ``check(name, value)`` parses a TOML setting as the option of
    that name of ``maskgit COMMAND`` parses its text (type, choices, range) and returns that option's error message
    (None when it is fine, or when no option has that name)."""
    from typer.main import get_command

    from maskgit_cli.cli.common import app

    cmd = get_command(app).commands[command]
    ctx = typer.Context(cmd)
    params = {p.name: p for p in cmd.params if p.param_type_name == "option"}

    def check(name: str, value: Any) -> str | None:
        param = params.get(name)
        if param is None or param.is_flag:
            return None
        text = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            param.process_value(ctx, text)
        except typer.BadParameter as e:
            return e.format_message()
        return None

    return check
