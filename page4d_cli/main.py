"""Entry point of the ``page4d`` command."""

from __future__ import annotations

import typer

from page4d_cli import __version__
from page4d_cli.commands.inspect_load import inspect_load_command
from page4d_cli.commands.reconstruct import _HELP as RECONSTRUCT_HELP, reconstruct_cmd
from page4d_cli.commands.weights import app as weights_app

app = typer.Typer(
    name="page4d",
    help="Synchronized multi-camera video in, 4D reconstruction out (PAGE-4D network).",
    no_args_is_help=True,
    add_completion=False,
)
app.command("reconstruct", help=RECONSTRUCT_HELP)(reconstruct_cmd)
app.add_typer(weights_app, name="weights", help="Fetch, register and list pretrained weights.")
app.command("inspect-load")(inspect_load_command)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"page4d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """page4d command line."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
