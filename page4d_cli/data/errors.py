"""The error of the ground-truth data tools: one line naming the file, what is wrong and the fix."""

from __future__ import annotations

from models.errors import Page4DError


class DataFormatError(Page4DError):
    """A clip, a ``cameras.json`` or a map file cannot be used (``<file>: <what>; <fix>``)."""
