"""The PAGE-4D multi-view x time network and its weight loading."""

from models.config import ConfigError, Page4DConfig, PRESETS

__all__ = ["ConfigError", "Page4DConfig", "PRESETS"]
