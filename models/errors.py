"""The one base class of every user-facing error of page4d (network, loading, pipeline, CLI).

A ``Page4DError`` carries ONE line: ``<file or thing>: <what is wrong>; <how to fix it>``. The CLI
catches this class alone (``page4d_cli.main``) and prints the message without a traceback. It lives in
``models`` because that is the lowest package (``page4d_cli`` imports ``models``, never the other way
round), and it imports nothing heavy, so any module may use it.

Subclasses keep a second, standard base where callers may expect one (``ConfigError`` is also a
``ValueError``, ``OutputExistsError`` a ``FileExistsError``), so ``except ValueError`` still works.

Notices that are not errors (the run goes on) leave the network as a ``NetworkWarning`` through
``warnings.warn``: ``models`` knows no reporter. Where the pipeline runs the network
(``page4d_cli.pipeline.predict.network_warnings_to``) they are caught and handed, each distinct
message once, to the reporter (terminal and ``run.json``); other warning categories pass through.
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


class NetworkWarning(UserWarning):
    """A one-line notice from the network about its input or how it runs, e.g. an epipolar camera pair
    without baseline (prior skipped for it) or FlexAttention unavailable (padded path used instead)."""
