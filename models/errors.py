"""The one base class of every user-facing error of page4d (network, loading, pipeline, CLI).

A ``Page4DError`` carries ONE line: ``<file or thing>: <what is wrong>; <how to fix it>``. The CLI
catches this class alone and prints the message without a traceback. It lives in ``models`` because
that is the lowest package (``page4d_cli`` imports ``models``, never the other way round).
"""

from __future__ import annotations


def one_line(message: object) -> str:
    """Collapse whitespace (newlines included) so a message always prints as a single line."""
    return " ".join(str(message).split())


class Page4DError(Exception):
    """Base of every error meant for the person running page4d; the message is normalised to one line."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""
