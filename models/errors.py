"""The one base class of every user-facing error of page4d (network, loading, pipeline, CLI).

A ``Page4DError`` carries ONE line: ``<file or thing>: <what is wrong>; <how to fix it>``. The CLI
catches this class alone (``page4d_cli.main``) and prints the message without a traceback. It lives in
``models`` because that is the lowest package (``page4d_cli`` imports ``models``, never the other way
round), and it imports nothing heavy, so any module may use it.

Subclasses keep a second, standard base where callers may expect one (``ConfigError`` is also a
``ValueError``, ``OutputExistsError`` a ``FileExistsError``), so ``except ValueError`` still works.
"""

from __future__ import annotations

import os
from typing import Union

#: What page4d accepts wherever a file or folder is named.
PathLike = Union[str, "os.PathLike[str]"]


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
