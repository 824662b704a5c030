"""A ``page4d reconstruct`` output folder, read back from its own files only (it may have been copied to
another machine): ``cameras.json`` says where everything is (``files[kind].pattern``) and how to decode
it; the preview frames (``preview/frames/...``) are optional.

    folder = ReconstructionFolder.open("page4d_out/cams")   # ViewError (one line) if missing/partial
    xyz, rgb = folder.read_points(t)                         # [N, 3] float32, [N, 3] uint8
    depth, meter = folder.read_depth(t, v)                   # raw map + units per world unit

Everything is checked when the folder is opened (file existence is cheap), so a partial copy fails
before any logging starts, naming the first missing file and how many are missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from models.errors import Page4DError, PathLike
from page4d_cli.view.ply import read_ply

CAMERAS_FILE = "cameras.json"
# Kinds of per-(t, v) files the viewer shows, with the key of their pattern's placeholders.
VIEWED_KINDS = ("points", "depth", "masks")
FRAMES_PATTERN = "preview/frames/cam{v:02d}/frame_{t:04d}.jpg"  # written by page4d_cli.preview.write


class ViewError(Page4DError):
    """The folder cannot be viewed (missing, partial, not a reconstruction) or the viewer cannot start."""


@dataclass
class ReconstructionFolder:
    """The parsed ``cameras.json`` of an output folder plus typed access to its per-instant files."""

    root: Path
    cameras: dict
    has_frames: bool = False
    notes: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, root: PathLike) -> "ReconstructionFolder":
        """Read and check the folder; ``ViewError`` naming what is missing and what to do."""
        from page4d_cli.pipeline.records import validate_cameras_json

        root = Path(root)
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "no such folder"
            raise ViewError(f"{root}: {what}; give the output folder of page4d reconstruct (e.g. page4d_out/cams)")
        path = root / CAMERAS_FILE
        if not path.is_file():
            raise ViewError(f"{path}: not found, so {root} is not a page4d reconstruct output folder; run "
                            "page4d reconstruct first, or copy the whole output folder")
        try:
            cameras = json.loads(path.read_text())
            validate_cameras_json(cameras)
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ViewError(f"{path}: unreadable ({exc}); re-run page4d reconstruct to rewrite the folder") from None
        folder = cls(root=root, cameras=cameras)
        folder._check_files()
        return folder

    def _check_files(self) -> None:
        missing: list[str] = []
        for kind in VIEWED_KINDS:
            if kind in self.cameras["files"]:
                missing += [p for p in self._expected(kind) if not (self.root / p).is_file()]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ViewError(f"{self.root / missing[0]}: missing{more} (listed in {CAMERAS_FILE}); the folder is "
                            "incomplete: copy the whole output folder or re-run page4d reconstruct")
        frames = [FRAMES_PATTERN.format(t=t, v=v) for t in range(self.num_instants) for v in range(self.num_cameras)]
        self.has_frames = all((self.root / p).is_file() for p in frames)
        if not self.has_frames:
            self.notes.append("no input frames in preview/frames (run written with --no-preview): frustums show "
                              "depth and masks only")
        if "points" not in self.cameras["files"]:
            self.notes.append("no point clouds in this output (written without points)")

    def _expected(self, kind: str) -> list[str]:
        pattern = self.cameras["files"][kind]["pattern"]
        if kind == "points":
            return [pattern.format(t=t) for t in range(self.num_instants)]
        return [pattern.format(t=t, v=v) for t in range(self.num_instants) for v in range(self.num_cameras)]

    # ----------------------------------------------------------------- metadata

    @property
    def num_instants(self) -> int:
        return int(self.cameras["num_instants"])

    @property
    def num_cameras(self) -> int:
        return int(self.cameras["num_cameras"])

    def has(self, kind: str) -> bool:
        return kind in self.cameras["files"]

    def camera_name(self, v: int) -> str:
        return self.cameras["cameras"][v]["dir"]

    def frame(self, t: int, v: int) -> dict:
        return self.cameras["cameras"][v]["frames"][t]

    def timestamp(self, t: int) -> float:
        """Seconds of instant t: camera 0's sample (the reference camera)."""
        return float(self.frame(t, 0)["timestamp"])

    def image_size(self, v: int) -> tuple[int, int]:
        width, height = self.cameras["cameras"][v]["image_size"]
        return int(width), int(height)

    def intrinsics(self, t: int, v: int) -> np.ndarray:
        return np.asarray(self.frame(t, v)["K"], dtype=np.float64)

    def camera_from_world(self, t: int, v: int) -> np.ndarray:
        return np.asarray(self.frame(t, v)["camera_from_world"], dtype=np.float64)

    def all_camera_from_world(self) -> np.ndarray:
        """``[T, V, 4, 4]``."""
        return np.array([[self.frame(t, v)["camera_from_world"] for v in range(self.num_cameras)]
                         for t in range(self.num_instants)], dtype=np.float64)

    # ----------------------------------------------------------------- per-instant files

    def _path(self, kind: str, t: int, v: Optional[int] = None) -> Path:
        pattern = self.cameras["files"][kind]["pattern"]
        return self.root / (pattern.format(t=t) if v is None else pattern.format(t=t, v=v))

    def read_points(self, t: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Fused points of instant t: xyz ``[N, 3]`` float32 and RGB ``[N, 3]`` uint8 (None without colours)."""
        return read_ply(self._path("points", t))

    def read_depth(self, t: int, v: int) -> tuple[np.ndarray, float]:
        """``(map, meter)``: the stored depth map and how many map units make one world unit.

        16-bit PNG: the raw integers (``meter = 1 / scale``, 0 = invalid); npy / exr: float32 world
        units (``meter = 1``). Handing the raw map on keeps memory and the recording small.
        """
        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read when OpenCV first needs EXR (as export.py)
        import cv2

        record = self.cameras["files"]["depth"]
        path = self._path("depth", t, v)
        if record["format"] == "npy":
            return np.load(path).astype(np.float32, copy=False), 1.0
        values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if values is None:
            raise ViewError(f"{path}: OpenCV could not read it; the file is damaged, re-run page4d reconstruct")
        if record["format"] == "png":
            return values, 1.0 / float(record["scale"])
        return values.astype(np.float32, copy=False), 1.0

    def read_mask(self, t: int, v: int) -> np.ndarray:
        """Dynamic mask ``[h, w]`` uint8 (0 static, 1 dynamic; probability masks thresholded at 0.5)."""
        import cv2

        path = self._path("masks", t, v)
        values = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if values is None:
            raise ViewError(f"{path}: OpenCV could not read it; the file is damaged, re-run page4d reconstruct")
        return (values > 127).astype(np.uint8)

    def frame_path(self, t: int, v: int) -> Optional[Path]:
        """The input frame written with the previews (JPEG), or None when the run had no previews."""
        return self.root / FRAMES_PATTERN.format(t=t, v=v) if self.has_frames else None
