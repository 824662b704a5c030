"""The PAGE-4D multi-view x time network and its weight loading (``models.loading``).

The names below are imported on first use (PEP 562), so ``import models.errors`` or
``import models.config`` does not pull in torch: the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY = {
    "ConfigError": "models.config",
    "Page4DConfig": "models.config",
    "PRESETS": "models.config",
    "Page4DError": "models.errors",
    "VGGT": "models.vggt",
    "Page4DModel": "models.vggt",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # for type checkers and IDEs only
    from models.config import PRESETS, ConfigError, Page4DConfig  # noqa: F401
    from models.errors import Page4DError  # noqa: F401
    from models.vggt import VGGT, Page4DModel  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
