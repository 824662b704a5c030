"""What can go wrong in ``page4d weights fetch``: one-line errors the user can act on, and the interrupt.

All are ``WeightsError`` (so ``Page4DError``: the CLI prints them as one line, exit 1), except
:class:`FetchInterrupted`, which stays a ``KeyboardInterrupt`` so Ctrl-C keeps its meaning.
"""

from __future__ import annotations

from page4d_cli.weights.registry import WeightsError


class FetchError(WeightsError):
    """A download could not be done (network, authentication, missing file...)."""


class LicenceNotAccepted(FetchError):
    """The user did not accept the licence of a file that needs it."""


class NotEnoughDiskSpace(FetchError):
    """The cache folder has less free space than the files need."""


class VerificationError(FetchError):
    """A downloaded file does not match what the hub reported."""


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a fetch. Still a ``KeyboardInterrupt``; ``message`` is the one line
    to show: what was registered before, that the interrupted file was not, and that it resumes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
