"""Weight loading: file access (checkpoint_io), layout detection (layouts), the three-stage plan
(rules, plan, provenance), the loader, and synthetic checkpoints for tests and benchmarks."""

from .checkpoint_io import CheckpointError, CheckpointReader, StateDictReader, open_checkpoint
from .layouts import describe_dims, detect_layout, expect_layout, infer_dims, size_mismatch
from .loader import inspect_load, load_model
from .plan import SizeMismatchError
from .provenance import LoadReport, TensorRecord

__all__ = [
    "CheckpointError", "CheckpointReader", "StateDictReader", "open_checkpoint",
    "describe_dims", "detect_layout", "expect_layout", "infer_dims", "size_mismatch",
    "inspect_load", "load_model", "SizeMismatchError", "LoadReport", "TensorRecord",
]
