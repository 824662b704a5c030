"""Entry point of the ``page4d`` command.

How to add a command (keep ``page4d --help`` fast, < 0.5 s, see ``benchmarks/bench_cli_startup.py``):

1. Write ``page4d_cli/commands/<name>.py`` defining ``app = typer.Typer(add_completion=False)`` with the
   command registered on it (``@app.command("<name>")``; several for a group). Its top level imports only
   the standard library, ``typer``, ``rich`` and light ``page4d_cli`` modules (``console``,
   ``weights.catalog`` ...): torch, numpy, OpenCV, open3d, huggingface_hub and ``models.*`` (except
   ``models.errors``) are imported INSIDE the command function. ``tests/test_cli_startup.py`` runs
   ``--help`` of every command in a fresh interpreter and fails if one of them imports torch.
2. Add a row to ``COMMANDS`` in ``page4d_cli/commands/__init__.py`` (name, module, one-line summary).
   The root group lists commands from that table and imports a command's module only when it runs or
   shows its own ``--help``: ``page4d --help`` imports no command module at all.
3. Let user-facing errors propagate: raise a ``models.errors.Page4DError`` subclass with a one-line
   message; :class:`Page4DGroup` prints it with ``page4d_cli.console.fail`` (exit code 1). Commands
   catch only what needs special handling (Ctrl-C, out of memory).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from models.errors import Page4DError
from page4d_cli import __version__
from page4d_cli.commands import COMMANDS, CommandSpec
from page4d_cli.console import fail


class ListedCommand(TyperCommand):
    """A command as ``page4d --help`` lists it: name and summary only, until it is resolved to run."""

    def __init__(self, spec: CommandSpec) -> None:
        super().__init__(spec.name, help=spec.summary, short_help=spec.summary)
        self.spec = spec


def load_command(spec: CommandSpec) -> Any:
    """Import the module of ``spec`` and build its click command (a group for ``weights``/``data``)."""
    command = typer.main.get_command(importlib.import_module(spec.module).app)
    command.name = spec.name
    return command


class Page4DGroup(TyperGroup):
    """The root command group.

    - Lists the commands of ``page4d_cli.commands.COMMANDS`` and imports one only when it is resolved.
    - The one place where a ``Page4DError`` becomes ``error: <line>``, exit 1. Sub-groups
      (``page4d weights ...``) run inside this ``invoke``, so their errors land here too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for spec in COMMANDS:
            self.commands[spec.name] = ListedCommand(spec)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, ListedCommand):
            command = self.commands[name] = load_command(command.spec)
        return name, command, rest

    def invoke(self, ctx) -> Any:
        try:
            return super().invoke(ctx)
        except Page4DError as exc:
            fail(exc)


app = typer.Typer(
    name="page4d",
    cls=Page4DGroup,
    help="Synchronized multi-camera video in, 4D reconstruction out (PAGE-4D network).",
    no_args_is_help=True,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"page4d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """page4d command line."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
