"""The checkpoint reader interface and its error, shared by every format's reader.

A reader lists a checkpoint's tensors by name, shape and dtype without reading their data, and
reads one tensor on request (:mod:`models.loading.safetensors_reader`,
:mod:`models.loading.torch_reader`; :func:`models.loading.checkpoint_io.open_checkpoint` picks one).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Optional

import torch

from models.errors import Page4DError

FETCH_HINT = "re-download it (page4d weights fetch) or copy it again"


class CheckpointError(Page4DError, ValueError):
    """A checkpoint file cannot be used; the one-line message names the file and the fix."""


class CheckpointReader:
    """Names, shapes and dtypes of a checkpoint's tensors; ``get`` reads one tensor.

    Attributes: ``path`` (Path), ``format`` ("safetensors" | "torch" | "memory"), ``metadata`` (dict of str;
    the safetensors ``__metadata__``, or for torch files which entry held the state dict and which
    other entries were ignored). Use as a context manager or call :meth:`close`.
    """

    format: str = ""

    def __init__(self, path: Path, metadata: Optional[dict] = None) -> None:
        self.path = path
        self.metadata: dict = dict(metadata or {})

    # -- subclasses provide these -------------------------------------------------------------
    def keys(self) -> list[str]:
        """Tensor names, in file order."""
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of tensor ``key`` (read from the header; no data is read)."""
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        """dtype of tensor ``key`` (read from the header; no data is read)."""
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        """Tensor ``key`` on the CPU, backed by a private (copy-on-write) map of the file: its pages
        are read when its values are first used, and writing to it never changes the file."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop the file handles; tensors already returned stay valid."""

    # -- shared -------------------------------------------------------------------------------
    def numel(self, key: str) -> int:
        return math.prod(self.shape(key))

    @property
    def numel_total(self) -> int:
        """Number of values in all tensors together."""
        return sum(self.numel(k) for k in self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.path} ({len(self)} tensors)>"

    def _missing(self, key: str) -> KeyError:
        return KeyError(f"{self.path}: no tensor named {key!r} ({len(self)} tensors in the file)")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters (its class name when empty)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
