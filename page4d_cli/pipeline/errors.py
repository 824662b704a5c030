"""Bad input and notices about the input, worded for the person running ``page4d``.

Every message is ONE line of the form ``<file or folder>: <what is wrong>; <how to fix it>`` so the
CLI can print it as-is (no traceback) and exit non-zero. Warnings are not exceptions: the reading
code collects them as strings (``ClipBatch.warnings``) and the CLI shows them after reading.
"""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def one_line(message: str) -> str:
    """Collapse whitespace (newlines included) so a message always prints as a single line."""
    return " ".join(str(message).split())


class InputError(Exception):
    """The input folder, a file in it or an option cannot be used; the message says which and why.

    The message is normalised to one line, so callers may build it from several pieces.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    @property
    def message(self) -> str:
        return str(self.args[0])


class InputWarning(UserWarning):
    """Category for input notices, for code that prefers Python's ``warnings`` module.

    The pipeline itself does not emit these through ``warnings``; it gathers them in a
    ``WarningLog`` so that the CLI decides how to show them.
    """


class WarningLog(list):
    """A ``list[str]`` of one-line notices about the input, in the order they were found.

    ``add`` normalises the message to one line and drops exact duplicates (the same notice about
    the same file is useful once).
    """

    def add(self, message: str) -> None:
        line = one_line(message)
        if line and line not in self:
            self.append(line)


def display_path(path: PathLike) -> str:
    """How a path is named in messages: as the user spelled it (relative stays relative)."""
    return os.fspath(path)
