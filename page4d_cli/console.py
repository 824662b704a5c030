"""Shared console output of the commands: one-line errors and warnings, never wrapped."""

from __future__ import annotations

from rich.console import Console

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: object) -> None:
    """``error: <message>`` on one line of stderr (the message itself names the file and the fix)."""
    text = " ".join(str(message).split())
    _err.print("error:", style="red", end=" ")
    _err.print(text, markup=False, soft_wrap=True)


def print_warning(message: object) -> None:
    text = " ".join(str(message).split())
    _err.print(f"warning: {text}", style="yellow", markup=False, soft_wrap=True)
