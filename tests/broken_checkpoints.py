"""Broken and wrong checkpoint files for tests: truncated copies, pickles that need code, unknown layouts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch

from models.errors import PathLike
from models.loading.synthetic import TINY, synthetic_state_dict, synthetic_tensor, write_checkpoint


class UntrustedPayload:
    """A custom class: unpickling an instance needs a code import, so weights_only refuses the file."""

    def __init__(self, note: str = "would run code when unpickled by a permissive loader") -> None:
        self.note = note


def truncated_copy(src: PathLike, dst: PathLike, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` (fraction < 1, or a byte count >= 1) of ``src`` to ``dst``."""
    remaining = int(os.path.getsize(src) * keep) if keep < 1 else int(keep)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while remaining > 0:
            chunk = fin.read(min(remaining, 1 << 24))
            if not chunk:
                break
            fout.write(chunk)
            remaining -= len(chunk)
    return Path(dst)


def write_code_pickle(path: PathLike, layout: str = "page4d") -> Path:
    """A ``.pt`` with a tiny valid state dict plus an instance of a custom class (needs code to load)."""
    sd = synthetic_state_dict(layout, device="cpu", **TINY)
    torch.save({"model": sd, "hook": UntrustedPayload()}, path)
    return Path(path)


def write_unknown_layout(path: PathLike, format: str = "safetensors") -> Path:
    """A checkpoint whose names belong to no known layout (a ResNet-like backbone)."""
    names: Iterable[str] = ("backbone.conv1.weight", "backbone.layer1.0.conv1.weight", "fc.weight", "fc.bias")
    sd = {name: synthetic_tensor(name, (4, 4)) for name in names}
    return write_checkpoint(sd, path, format)
