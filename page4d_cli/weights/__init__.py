"""Pretrained weights: what exists (catalog), what is on this machine (registry), how to get it (fetch).

Commands that need weights call :func:`resolve_weights`; ``page4d weights fetch|add|list`` manage
the registry. Importing this package stays light: the downloader (``page4d_cli.weights.fetch``,
which pulls in huggingface_hub) and the checkpoint reader are imported only when used.
"""

from page4d_cli.weights.catalog import CATALOG, ROLES, HubFile, select
from page4d_cli.weights.registry import (
    LayoutError,
    Registry,
    RegistryEntry,
    RegistryError,
    WeightsError,
    WeightsNotFound,
    WeightsSelection,
    add_local,
    page4d_home,
    registry_path,
    resolve_weights,
)

__all__ = [
    "CATALOG", "ROLES", "HubFile", "select",
    "LayoutError", "Registry", "RegistryEntry", "RegistryError", "WeightsError", "WeightsNotFound",
    "WeightsSelection", "add_local", "page4d_home", "registry_path", "resolve_weights",
]
