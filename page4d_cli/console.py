"""Shared console output of the commands: one-line errors and warnings, never wrapped."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from models.errors import one_line

EXIT_ERROR = 1


def print_error(message: object, console: Optional[Console] = None) -> None:
    """``error: <message>`` on one line of stderr (the message itself names the file and the fix)."""
    console = console or Console(stderr=True)
    console.print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True, highlight=False)


def fail(message: object, code: int = EXIT_ERROR, console: Optional[Console] = None) -> NoReturn:
    """Print the one-line error and exit with ``code`` (no traceback)."""
    print_error(message, console)
    raise typer.Exit(code)
