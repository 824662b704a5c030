"""A small PLY reader for the point clouds ``page4d reconstruct`` writes (binary or ASCII vertices with
x, y, z and optional red, green, blue), in numpy: no open3d import (seconds) just to view a folder.

Only the ``vertex`` element is read; it must come first (open3d and page4d write it first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from models.errors import Page4DError

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}


class PlyError(Page4DError):
    """A PLY file that this reader cannot use."""


def _parse_header(path: Path, handle) -> tuple[Optional[str], int, list[tuple[str, str]]]:
    if handle.readline().strip() != b"ply":
        raise PlyError(f"{path}: not a PLY file; re-run page4d reconstruct to rewrite it")
    byte_order, count, properties, element = None, None, [], None
    while True:
        line = handle.readline()
        if not line:
            raise PlyError(f"{path}: the PLY header has no end_header (truncated file); re-run page4d reconstruct")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            if words[1] not in _FORMATS:
                raise PlyError(f"{path}: unknown PLY format {words[1]!r}")
            byte_order = _FORMATS[words[1]]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif count is None:
                raise PlyError(f"{path}: the first PLY element is {element!r}, expected 'vertex'")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _TYPES:
                raise PlyError(f"{path}: unsupported vertex property {' '.join(words[1:])!r}")
            properties.append((words[2], _TYPES[words[1]]))
    if count is None:
        raise PlyError(f"{path}: no vertex element in the PLY header")
    return byte_order, count, properties


def read_ply(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(xyz [N, 3] float32, rgb [N, 3] uint8 or None)`` of a PLY file's vertices."""
    path = Path(path)
    with open(path, "rb") as handle:
        byte_order, count, properties = _parse_header(path, handle)
        names = [name for name, _ in properties]
        if not {"x", "y", "z"} <= set(names):
            raise PlyError(f"{path}: the vertices have no x, y, z")
        if byte_order is None:
            rows = np.loadtxt(handle, max_rows=count, ndmin=2) if count else np.zeros((0, len(names)))
            columns = {name: rows[:, k] for k, name in enumerate(names)}
        else:
            dtype = np.dtype([(name, byte_order + code) for name, code in properties])
            data = np.fromfile(handle, dtype=dtype, count=count)
            if len(data) != count:
                raise PlyError(f"{path}: {len(data)} of {count} vertices present (truncated file); "
                               "re-run page4d reconstruct")
            columns = {name: data[name] for name in names}
    xyz = np.stack([columns["x"], columns["y"], columns["z"]], axis=-1).astype(np.float32)
    if not {"red", "green", "blue"} <= set(names):
        return xyz, None
    rgb = np.stack([columns["red"], columns["green"], columns["blue"]], axis=-1)
    if rgb.dtype.kind == "f":  # float colours in [0, 1]
        rgb = np.clip(np.rint(rgb * 255), 0, 255)
    return xyz, rgb.astype(np.uint8)
