"""Read checkpoint files by name, shape and dtype without loading every tensor.

``open_checkpoint(path)`` returns a :class:`CheckpointReader` for either format page4d meets:

- ``.safetensors`` (Pi3's ``model.safetensors``): the JSON header is parsed here (8-byte little-endian
  length, then JSON), every entry's offsets are checked against the file size, and tensors are read
  one at a time through ``safetensors.safe_open``, which memory-maps the file.
- torch pickles (``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt``; PAGE-4D's ``checkpoint_mask.pt``): loaded with
  ``torch.load(mmap=True, weights_only=True)``, so every tensor is backed by a map of the file and no
  tensor data is read until a tensor is used. The state dict is taken from ``"model"``, ``"state_dict"``
  or the dict itself; other entries (optimizer state, epoch, ...) are ignored.

The format is sniffed from the first bytes, not the file name, so a mis-named file still opens.
Every failure is a :class:`CheckpointError` whose one-line message names the file and the fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Mapping, Optional

import torch

from models.errors import Page4DError, PathLike

FETCH_HINT = "re-download it (page4d weights fetch) or copy it again"

# safetensors dtype names -> torch dtypes (only those this torch build knows).
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, attr)
    for name, attr in {
        "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
        "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
        "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
        "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    }.items()
    if hasattr(torch, attr)
}

# The safetensors format caps the header at 100 MB; a larger length means a file that is not one.
_MAX_HEADER = 100_000_000

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


class SafetensorsReader(CheckpointReader):
    """A ``.safetensors`` file: header parsed and validated here, tensors read via ``safe_open``."""

    format = "safetensors"

    def __init__(self, path: Path) -> None:
        header, metadata = _read_safetensors_header(path)
        super().__init__(path, metadata)
        self._entries = header  # name -> (dtype, shape, (offset, nbytes))
        self._handle = None  # safe_open is opened on the first get(): listing never maps the file

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self._entries:
            raise self._missing(key)
        return self._entries[key][1]

    def dtype(self, key: str) -> torch.dtype:
        if key not in self._entries:
            raise self._missing(key)
        return self._entries[key][0]

    def data_range(self, key: str) -> tuple[int, int]:
        """(absolute offset, byte count) of the tensor's raw little-endian data in the file.

        Lets a loader read the bytes straight into the destination tensor, with no memory map whose
        pages would stay resident.
        """
        if key not in self._entries:
            raise self._missing(key)
        return self._entries[key][2]

    def get(self, key: str) -> torch.Tensor:
        if key not in self._entries:
            raise self._missing(key)
        if self._handle is None:
            from safetensors import safe_open

            try:
                self._handle = safe_open(str(self.path), framework="pt", device="cpu")
            except Exception as exc:  # the header passed our checks but the library disagrees
                raise CheckpointError(
                    f"{self.path}: corrupt safetensors file ({_first_line(exc)}); {FETCH_HINT}"
                ) from None
        return self._handle.get_tensor(key)

    def close(self) -> None:
        self._handle = None


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


def open_checkpoint(path: PathLike) -> CheckpointReader:
    """Open a checkpoint for listing and per-tensor reads; raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; download it with `page4d weights fetch` or fix the path")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; pass the checkpoint file inside it")
    kind = _sniff(path)
    if kind == "safetensors":
        return SafetensorsReader(path)
    return _open_torch(path, zipped=(kind == "torch-zip"))


# ---------------------------------------------------------------------------------------------
# format sniffing and the safetensors header


def _sniff(path: Path) -> str:
    """'safetensors', 'torch-zip' or 'torch-legacy', from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    # Before the pickle test: a header length whose low byte is 0x80 would look like a pickle.
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol opcode: torch's pre-1.6 format
        return "torch-legacy"
    if len(head) < 9 and path.suffix == ".safetensors":
        return "safetensors"  # so the header reader reports the truncation
    if head[:2] == b"PK" or path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return "torch-zip"  # let the zip reader name what is wrong
    raise CheckpointError(
        f"{path}: not a checkpoint page4d can read (neither safetensors nor a torch zip file); "
        f"pass a .safetensors or .pt file"
    )


def _read_safetensors_header(path: Path) -> tuple[dict, dict]:
    """Parse and validate the header; returns ({name: (dtype, shape, (offset, nbytes))}, metadata)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
            raise CheckpointError(f"{path}: truncated: file has {size} bytes, not even a header; {FETCH_HINT}")
        (n,) = struct.unpack("<Q", raw_len)
        if n > _MAX_HEADER:
            raise CheckpointError(f"{path}: not a safetensors file (header length {n} is implausible); {FETCH_HINT}")
        if 8 + n > size:
            raise CheckpointError(
                f"{path}: truncated: header says {n} bytes of header, file has {size - 8}; {FETCH_HINT}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({_first_line(exc)}); {FETCH_HINT}") from None

    metadata = header.pop("__metadata__", None) or {}
    data_len = size - 8 - n
    entries: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
    data_end = 0
    for name, info in header.items():
        if isinstance(info, dict) and info.get("dtype") not in SAFETENSORS_DTYPES and "dtype" in info:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {info['dtype']}, which this torch cannot read; "
                f"convert the file to F32, F16 or BF16"
            )
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{path}: corrupt safetensors header entry {name!r}: {info!r}; {FETCH_HINT}") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if min(shape, default=0) < 0 or end - begin != math.prod(shape) * itemsize:
            raise CheckpointError(
                f"{path}: corrupt safetensors header: {name!r} has shape {list(shape)} but "
                f"{end - begin} bytes; {FETCH_HINT}"
            )
        entries[name] = (dtype, shape, (8 + n + begin, end - begin))  # absolute byte range in the file
        data_end = max(data_end, end)
    if data_end > data_len:
        raise CheckpointError(
            f"{path}: truncated: header says {data_end} bytes of data, file has {data_len}; {FETCH_HINT}"
        )
    # File order = order of the data, which is how the file was written.
    order = sorted(entries, key=lambda k: int(header[k]["data_offsets"][0]))
    return {k: entries[k] for k in order}, {str(k): str(v) for k, v in metadata.items()}


# ---------------------------------------------------------------------------------------------
# torch pickles


def _open_torch(path: Path, zipped: bool) -> TorchReader:
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
        raise CheckpointError(f"{path}: corrupt torch checkpoint ({_first_line(exc)}); {FETCH_HINT}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path}: truncated or corrupt torch checkpoint ({_first_line(exc)}); {FETCH_HINT}"
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
