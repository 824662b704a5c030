"""Weight loading (see docs/design.md, "Three-stage loading"):

- ``roles``: what a file can be to the network (role, stage, label, accepted layouts); light.
- ``checkpoint_io``: opens a checkpoint, whatever its format, with the reader of ``checkpoint_reader``
  (interface, error), ``safetensors_reader`` or ``torch_reader``: header-only, one tensor at a time.
- ``checkpoint_grammar``: the tensor names and shapes of every checkpoint layout, as data.
- ``layouts``: which layout a file has, and its sizes.
- ``source_map``: which source tensor fills each of our tensors (the three-stage plan as rules).
- ``plan``: applies the source map to a model and files; ``provenance``: its per-tensor records.
- ``loader``: builds the network and fills it; ``finetuned``: stage 4 (a ``page4d train`` run).
- ``synthetic``: checkpoints in the real layouts at any size (tests, benchmarks, ``would_fill``).

The names below are imported on first use, so ``import models.loading.roles`` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CheckpointError": "checkpoint_reader", "CheckpointReader": "checkpoint_reader",
    "StateDictReader": "torch_reader", "open_checkpoint": "checkpoint_io",
    "describe_dims": "layouts", "detect_layout": "layouts", "expect_layout": "layouts", "infer_dims": "layouts",
    "size_mismatch": "layouts",
    "inspect_load": "loader", "load_model": "loader",
    "SizeMismatchError": "plan", "MissingTensorsError": "plan",
    "LoadReport": "provenance", "TensorRecord": "provenance",
    "ROLES": "roles", "SourceRole": "roles",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models.loading' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"models.loading.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
