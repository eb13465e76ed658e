"""The `maskgit` command line: a thin Typer layer over the library, one module per help panel.

Each command parses options, calls one library function and prints the result (results on stdout, progress and
logs on stderr). No math lives here. Options shared by several commands are declared once in
:mod:`maskgit_cli.cli.common` (option groups); torch and the library are imported inside the commands, so
`maskgit --help` stays instant. Expected errors print one line `Error: ...` and exit 1 (MASKGIT_DEBUG=1 shows the
traceback); bad option values exit 2 (Typer's usage errors, and the values the settings refuse after parsing:
:mod:`maskgit_cli.cli.option_checks`).
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from maskgit_cli._version import __version__
from maskgit_cli.cli.common import FILES, app, bench_app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"maskgit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    pass


# Importing a command module registers its commands; the help panels follow this order (the pipeline's).
for _module in ("data", "vqgan", "transformer", "fit", "inpaint", "serve", "scores", "files"):
    importlib.import_module(f"maskgit_cli.cli.{_module}")
app.add_typer(bench_app, name="bench", rich_help_panel=FILES)


def main() -> None:
    """Console-script entry point."""
    from maskgit_cli.memory import keep_freed_memory

    keep_freed_memory()  # CPU steps reuse their heap instead of page-faulting it in again (memory.py)
    app(prog_name="maskgit")
