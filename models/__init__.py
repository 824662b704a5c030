"""The PAGE-4D multi-view x time network and its weight loading (``models.loading``)."""

from models.config import PRESETS, ConfigError, Page4DConfig
from models.vggt import VGGT, Page4DModel

__all__ = ["ConfigError", "Page4DConfig", "PRESETS", "VGGT", "Page4DModel"]
