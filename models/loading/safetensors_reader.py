"""``.safetensors`` files (Pi3's ``model.safetensors``): the header is parsed and validated here.

The header is an 8-byte little-endian length, then JSON; every entry's offsets are checked against the
file size, and tensors are read one at a time through ``safetensors.safe_open``, which memory-maps the
file (or, via :meth:`SafetensorsReader.data_range`, straight into a destination tensor by the loader).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

from models.loading.checkpoint_reader import FETCH_HINT, CheckpointError, CheckpointReader, first_line

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


class SafetensorsReader(CheckpointReader):
    """A ``.safetensors`` file: header parsed and validated here, tensors read via ``safe_open``."""

    format = "safetensors"

    def __init__(self, path: Path) -> None:
        header, metadata = read_safetensors_header(path)
        super().__init__(path, metadata)
        self._entries = header  # name -> (dtype, shape, (offset, nbytes))
        self._handle = None  # safe_open is opened on the first get(): listing never maps the file

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _entry(self, key: str) -> tuple:
        """(dtype, shape, (offset, nbytes)) of ``key``, or the reader's one-line KeyError."""
        if key not in self._entries:
            raise self._missing(key)
        return self._entries[key]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entry(key)[1]

    def dtype(self, key: str) -> torch.dtype:
        return self._entry(key)[0]

    def data_range(self, key: str) -> tuple[int, int]:
        """(absolute offset, byte count) of the tensor's raw little-endian data in the file.

        Lets a loader read the bytes straight into the destination tensor, with no memory map whose
        pages would stay resident.
        """
        return self._entry(key)[2]

    def get(self, key: str) -> torch.Tensor:
        self._entry(key)  # an unknown key fails here, before the file is opened
        if self._handle is None:
            from safetensors import safe_open

            try:
                self._handle = safe_open(str(self.path), framework="pt", device="cpu")
            except Exception as exc:  # the header passed our checks but the library disagrees
                raise CheckpointError(
                    f"{self.path}: corrupt safetensors file ({first_line(exc)}); {FETCH_HINT}"
                ) from None
        return self._handle.get_tensor(key)

    def close(self) -> None:
        self._handle = None



def read_safetensors_header(path: Path) -> tuple[dict, dict]:
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
        raise CheckpointError(f"{path}: corrupt safetensors header ({first_line(exc)}); {FETCH_HINT}") from None

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
