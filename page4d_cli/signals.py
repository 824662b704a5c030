"""SIGINT and SIGTERM as exceptions, so every ``finally``/``except`` cleans up the same way for both.

The CLI calls :func:`install` first thing: Ctrl-C raises ``KeyboardInterrupt`` as usual and SIGTERM
(what ``timeout``, ``kill`` and batch schedulers send) raises :class:`Terminated`, a subclass of it,
so the atomic output folder is removed for both. The handler remembers the signal
(:func:`received`): an interrupt that a C extension turns into another exception (an ``ImportError``
while open3d loads, say) is still recognised as the user's interrupt and exits 130 / 143.

:func:`deferred` holds signals back for a few lines that must not be cut in half (removing a
temporary folder, swapping an old output for the new one) and delivers them afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

_received: list[int] = []
_reported: list[bool] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised where Python was when it did)."""


def exit_code(signum: int) -> int:
    """What shells report for a process ended by ``signum``: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + int(signum)


def _raise_for(signum: int, frame=None) -> None:
    _received.append(signum)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def install() -> None:
    """Route SIGINT and SIGTERM to :func:`_raise_for` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _raise_for)


def ignore() -> None:
    """From now on SIGINT/SIGTERM are only recorded (the process is already on its way out)."""
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            signal.signal(signum, lambda sig, frame: _received.append(sig))


def mark_reported() -> None:
    """The interrupt has been reported to the user (one line); the entry point adds none."""
    _reported.append(True)


def reported() -> bool:
    return bool(_reported)


def received() -> Optional[int]:
    """The first signal handled since :func:`install` (None if none)."""
    return _received[0] if _received else None


def signal_of(exc: BaseException) -> Optional[int]:
    """The signal behind ``exc``: SIGTERM for ``Terminated``, SIGINT for ``KeyboardInterrupt``, else the
    signal the handler saw (an exception raised while handling an interrupt), else None."""
    if isinstance(exc, Terminated):
        return signal.SIGTERM
    if isinstance(exc, KeyboardInterrupt):
        return received() or signal.SIGINT
    return received()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs and deliver them (to the previous handlers) afterwards.

    Outside the main thread Python cannot change handlers; the block then runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    for signum in HANDLED:
        signal.signal(signum, lambda sig, frame: pending.append(sig))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending[:1]:
            signal.raise_signal(signum)
