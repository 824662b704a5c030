"""Bad input and notices about the input, worded for the person running ``page4d``.

Every message is ONE line of the form ``<file or folder>: <what is wrong>; <how to fix it>`` so the
CLI can print it as-is (no traceback) and exit non-zero. Warnings are not exceptions: the reading
code collects them as strings (``ClipBatch.warnings``) and the CLI shows them after reading.
"""

from __future__ import annotations

import os

from models.errors import Page4DError, PathLike, one_line

__all__ = ["InputError", "PathLike", "WarningLog", "display_path", "one_line"]


class InputError(Page4DError):
    """The input folder, a file in it or an option cannot be used; the message says which and why.

    The message is normalised to one line, so callers may build it from several pieces.
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
