"""Checkpoint loading: file access (checkpoint_io), layout detection (layouts), synthetic checkpoints."""

from .checkpoint_io import CheckpointError, CheckpointReader, StateDictReader, open_checkpoint
from .layouts import describe_dims, detect_layout, expect_layout, infer_dims, size_mismatch

__all__ = [
    "CheckpointError", "CheckpointReader", "StateDictReader", "open_checkpoint",
    "describe_dims", "detect_layout", "expect_layout", "infer_dims", "size_mismatch",
]

from models.loading.loader import inspect_load, load_model  # noqa: E402  (after the readers)

__all__ = [*globals().get("__all__", []), "inspect_load", "load_model"]
