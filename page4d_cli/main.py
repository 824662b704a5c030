"""Entry point of the ``page4d`` command.

How to add a command (keep ``page4d --help`` fast, < 0.5 s, see ``benchmarks/bench_cli_startup.py``):

1. Write ``page4d_cli/commands/<name>.py`` whose top level imports only the standard library,
   ``typer``, ``rich`` and light ``page4d_cli`` modules (``console``, ``weights.catalog`` ...).
   torch, numpy, OpenCV, open3d, huggingface_hub and ``models.*`` (except ``models.errors``) are
   imported INSIDE the command function. ``tests/test_cli_startup.py`` runs ``--help`` of every
   registered command in a fresh interpreter and fails if one of them imports torch.
2. Register it below (``app.command`` for one command, ``app.add_typer`` for a group).
3. Let user-facing errors propagate: raise a ``models.errors.Page4DError`` subclass with a one-line
   message; :class:`Page4DGroup` prints it with ``page4d_cli.console.fail`` (exit code 1). Commands
   catch only what needs special handling (Ctrl-C, out of memory).
"""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup

from models.errors import Page4DError
from page4d_cli import __version__
from page4d_cli.commands.data import app as data_app
from page4d_cli.commands.eval import HELP as EVAL_HELP
from page4d_cli.commands.eval import eval_command
from page4d_cli.commands.inspect_load import inspect_load_command
from page4d_cli.commands.reconstruct import _HELP as RECONSTRUCT_HELP
from page4d_cli.commands.reconstruct import ReconstructCommand, reconstruct_cmd
from page4d_cli.commands.train import HELP as TRAIN_HELP
from page4d_cli.commands.train import train_command
from page4d_cli.commands.view import HELP as VIEW_HELP
from page4d_cli.commands.view import view_cmd
from page4d_cli.commands.weights import app as weights_app
from page4d_cli.console import fail


class Page4DGroup(TyperGroup):
    """The root command group: the one place where a ``Page4DError`` becomes ``error: <line>``, exit 1.

    Sub-groups (``page4d weights ...``) run inside this ``invoke``, so their errors land here too.
    """

    def get_help_option(self, ctx: click.Context):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""  # a flag: no "<bool>" placeholder in --help
        return option

    def invoke(self, ctx: click.Context) -> Any:
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

# ---- commands (see the module docstring before adding one) ----------------------------------
app.command("reconstruct", cls=ReconstructCommand, help=RECONSTRUCT_HELP)(reconstruct_cmd)
app.add_typer(weights_app, name="weights", help="Fetch, register and list pretrained weights.")
app.command("inspect-load")(inspect_load_command)
app.add_typer(data_app, name="data", help="Ground-truth clips: synthesise (synth) and validate (check).")
app.command("view", help=VIEW_HELP)(view_cmd)
app.command("eval", help=EVAL_HELP)(eval_command)
app.command("train", help=TRAIN_HELP)(train_command)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"page4d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", metavar="", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """page4d command line."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
