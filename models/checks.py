"""The one-line checks of validated dataclasses: each raises its owner's ``Page4DError`` subclass.

A config or options class binds one ``Checks`` to its error class (``check = Checks(ConfigError)``) and
states each rule in one line in ``__post_init__``. Messages keep the two spellings users already see:

- a field of a config: ``"<name> must be <requirement>, got <value>"`` (``models/config.py``,
  ``page4d_cli/train/config.py``), e.g. ``"depth must be > 0, got 0"``;
- a command-line option: ``"<flag> <value>: <what is wrong or what to do>"`` (``page4d_cli/data/synth.py``),
  e.g. ``"--rig sideways: use one of mixed, static, moving"``.

This module imports nothing heavy (``page4d --help`` may read the classes that use it).
"""

from __future__ import annotations

import math
from typing import Iterable

from models.errors import Page4DError


class Checks:
    """One-line checks raising ``error`` (a ``Page4DError`` subclass) when a rule does not hold."""

    def __init__(self, error: type[Page4DError]) -> None:
        self.error = error

    # ------------------------------------------------------------------ "<name> must be ..., got <value>"
    def require(self, ok: bool, name: str, requirement: str, value: object) -> None:
        """``error("<name> must be <requirement>, got <value>")`` unless ``ok``."""
        if not ok:
            raise self.error(f"{name} must be {requirement}, got {value}")

    def positive(self, name: str, value) -> None:
        """``value > 0`` (None is refused too)."""
        self.require(value is not None and value > 0, name, "> 0", value)

    def at_least(self, name: str, value, minimum: int) -> None:
        self.require(value >= minimum, name, f">= {minimum}", value)

    def finite_non_negative(self, name: str, value: float) -> None:
        self.require(math.isfinite(value) and value >= 0, name, "a finite value >= 0", value)

    def one_of(self, name: str, value: object, choices: tuple) -> None:
        """``"<name> must be one of ('a', 'b'), got 'c'"``."""
        self.require(value in choices, name, f"one of {choices}", repr(value))

    # ------------------------------------------------------------------ "<flag> <value>: ..."
    def option(self, ok: bool, flag: str, value: object, what: str) -> None:
        """``error("<flag> <value>: <what>")`` unless ``ok``."""
        if not ok:
            raise self.error(f"{flag} {value}: {what}")

    def option_choice(self, flag: str, value: object, choices: Iterable[str]) -> None:
        choices = tuple(choices)
        self.option(value in choices, flag, value, f"use one of {', '.join(choices)}")
