"""torch pickles (``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt``; PAGE-4D's ``checkpoint_mask.pt``).

Loaded with ``torch.load(mmap=True, weights_only=True)``, so every tensor is backed by a map of the
file and no tensor data is read until a tensor is used. The state dict is taken from ``"model"``,
``"state_dict"`` or the dict itself; other entries (optimizer state, epoch, ...) are ignored. A pickle
that needs code is refused, naming the globals it imports (read off its opcodes, never executed).
"""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from models.loading.checkpoint_reader import FETCH_HINT, CheckpointError, CheckpointReader, first_line


# Harmless data types that training checkpoints carry next to the weights (``args`` namespaces, numpy
# scalars for metrics). Allow-listing them lets ``weights_only`` open such files; nothing here runs
# code while unpickling. Anything else that needs a global is refused.
def _harmless_globals() -> list:
    import argparse

    allowed: list = [argparse.Namespace]
    try:
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed += [np.dtype, np.ndarray, core.multiarray.scalar, core.multiarray._reconstruct]
        allowed += [type(np.dtype(t)) for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "?")]
    except Exception:  # numpy missing or reorganised: just allow less
        pass
    return allowed


def _allow(globals_: list):
    """``torch.serialization.safe_globals`` where this torch has it (2.5+), else a no-op."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow(globals_) if allow else contextlib.nullcontext()


class TorchReader(CheckpointReader):
    """A torch pickle loaded with ``mmap=True, weights_only=True``: tensors stay on disk until used."""

    format = "torch"

    def __init__(self, path: Path, state_dict: Mapping[str, torch.Tensor], metadata: dict) -> None:
        super().__init__(path, metadata)
        self._sd = state_dict

    def keys(self) -> list[str]:
        return list(self._sd)

    def __contains__(self, key: object) -> bool:
        return key in self._sd

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensor(key).shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._tensor(key).dtype

    def get(self, key: str) -> torch.Tensor:
        return self._tensor(key)

    def close(self) -> None:
        self._sd = {}

    def _tensor(self, key: str) -> torch.Tensor:
        try:
            return self._sd[key]
        except KeyError:
            raise self._missing(key) from None


class StateDictReader(TorchReader):
    """An in-memory state dict (e.g. meta tensors) behind the reader interface, for tests and tools."""

    format = "memory"

    def __init__(self, state_dict: Mapping[str, torch.Tensor], name: str = "<state dict>") -> None:
        super().__init__(Path(name), dict(state_dict), {})



def open_torch(path: Path, zipped: bool) -> TorchReader:
    """A reader for the torch pickle at ``path`` (memory-mapped when ``zipped``); raises CheckpointError."""
    if zipped:
        # Reading the zip's central directory is cheap and catches truncation (it sits at the end).
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(
                f"{path}: truncated or corrupt torch checkpoint (its zip directory is missing or damaged, "
                f"as after an interrupted download); {FETCH_HINT}"
            ) from None
    try:
        with _allow(_harmless_globals()), warnings.catch_warnings():
            # torch warns about pickle protocols it did not write before failing on them; the one-line
            # error below says what matters.
            warnings.simplefilter("ignore")
            # mmap needs the zip format; the pre-1.6 format can only be read whole.
            obj = torch.load(path, map_location="cpu", mmap=zipped, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            found = set(re.findall(r"GLOBAL ([\w.]+)", text)) or (set() if zipped else _pickle_globals(path))
            needs = ", ".join(sorted(found)) or "an unknown global"
            raise CheckpointError(
                f"{path}: refused: loading it would execute code (it needs {needs}); page4d never unpickles "
                f"such files - convert its weights to .safetensors with a script you trust and pass that"
            ) from None
        raise CheckpointError(f"{path}: corrupt torch checkpoint ({first_line(exc)}); {FETCH_HINT}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path}: truncated or corrupt torch checkpoint ({first_line(exc)}); {FETCH_HINT}"
        ) from None
    state_dict, metadata = _find_state_dict(path, obj)
    metadata["mmap"] = str(zipped)
    return TorchReader(path, state_dict, metadata)


def _pickle_globals(path: Path, max_pickles: int = 5) -> set[str]:
    """The code a non-zip pickle file imports (``module.name``), found by reading its opcodes only
    (``pickletools``; nothing is executed). torch's old format is a few pickles in a row; a raw
    ``pickle.dump`` file is one. Globals of torch itself and of Python's collections are left out."""
    found: set[str] = set()
    strings: list[str] = []
    with open(path, "rb") as fh:
        for _ in range(max_pickles):
            try:
                for opcode, arg, _pos in pickletools.genops(fh):
                    if isinstance(arg, str):
                        strings.append(arg)
                    if opcode.name == "GLOBAL":
                        found.add(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.add(f"{strings[-2]}.{strings[-1]}")
            except Exception:  # the end of the pickles (tensor data follows) or a damaged file
                break
    return {name for name in found if not name.startswith(("torch.", "collections.OrderedDict", "builtins."))}


def _find_state_dict(path: Path, obj: object) -> tuple[dict, dict]:
    """The tensors of ``obj["model"]``, ``obj["state_dict"]`` or ``obj`` itself, plus what was skipped."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__}, not a state dict; save the model's state_dict() instead"
        )
    entry = next((k for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)), None)
    sd = obj[entry] if entry else obj
    tensors = {k: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        top = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(
            f"{path}: no state dict found (looked for 'model', 'state_dict' or a dict of tensors; "
            f"top-level entries: {top}); pass the checkpoint that holds the model weights"
        )
    skipped = [str(k) for k in obj if k != entry] if entry else []
    skipped += [str(k) for k in sd if k not in tensors]
    return tensors, {"state_dict_entry": entry or "", "ignored": ", ".join(skipped)}

