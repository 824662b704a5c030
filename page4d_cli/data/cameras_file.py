"""Read a ``cameras.json`` -- a ``reconstruct`` output's or a ground-truth clip's ``gt/cameras.json``.

Both are written in the schema of ``page4d_cli.pipeline.records`` (format ``page4d-cameras``): per camera
its name, output folder ``dir`` (``camXX``), original ``image_size`` (W, H) and per instant ``t`` the
source frame index, timestamp, K (original pixels, pixel-centre convention) and camera-from-world 4x4.
A ground-truth file may also give ``K`` / ``camera_from_world`` once per camera (static rig); frames
that omit them inherit the camera's. The ``depth`` record (``format`` png | npy | exr, ``scale``) and
``files`` records (patterns) say how to read the maps; ``read_depth_file`` / ``read_mask_file`` do it.

Camera arguments (``cam``) are a camera name or an index in the file's camera order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before cv2 is first imported (EXR depth)
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from page4d_cli.data.errors import DataFormatError  # noqa: E402
from page4d_cli.pipeline.export import camera_dir, frame_name  # noqa: E402
from page4d_cli.pipeline.records import CAMERAS_FORMAT  # noqa: E402

CameraKey = Union[int, str]
DEPTH_FORMATS = ("png", "npy", "exr")


@dataclass
class CameraTrack:
    """One camera of a cameras.json: arrays over its T instants."""

    name: str
    index: int
    dir: str  # folder of its maps: "camXX"
    image_size: tuple[int, int]  # original (W, H)
    source: Optional[str]  # input video / image folder as recorded (may be None)
    K: np.ndarray  # [T, 3, 3] float64, original pixels
    camera_from_world: np.ndarray  # [T, 4, 4] float64
    source_frames: np.ndarray  # [T] int64
    timestamps: np.ndarray  # [T] float64 seconds (or frame index when fps is unknown)


@dataclass
class CamerasFile:
    """A parsed cameras.json; ``root`` is the folder holding it (maps are found relative to it)."""

    path: Path
    root: Path
    num_instants: int
    cameras: list[CameraTrack]
    depth: Optional[dict]  # depth record: format, scale, pattern ...; None = no depth maps
    files: dict  # per output kind (depth, masks, ...) the writer's record
    fps: Optional[float] = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def camera_names(self) -> list[str]:
        return [camera.name for camera in self.cameras]

    def camera(self, cam: CameraKey) -> CameraTrack:
        """The camera with this name, or at this index."""
        if isinstance(cam, (int, np.integer)) and not isinstance(cam, bool):
            if not 0 <= int(cam) < len(self.cameras):
                raise IndexError(f"camera index {cam} out of range 0..{len(self.cameras) - 1}")
            return self.cameras[int(cam)]
        for camera in self.cameras:
            if camera.name == cam:
                return camera
        raise KeyError(f"{self.path}: no camera named {cam!r} (cameras: {', '.join(self.camera_names)})")

    def has_masks(self) -> bool:
        return bool(self.files.get("masks"))

    def depth_path(self, cam: CameraKey, t: int) -> Path:
        if self.depth is None:
            raise DataFormatError(f"{self.path}: records no depth maps; write depth (a 'depth' record) first")
        return self.root / "depth" / self.camera(cam).dir / frame_name(t, self.depth.get("format", "png"))

    def mask_path(self, cam: CameraKey, t: int) -> Path:
        return self.root / "masks" / self.camera(cam).dir / frame_name(t, "png")

    def depth_map(self, cam: CameraKey, t: int) -> np.ndarray:
        """float32 ``[H, W]`` z-depth of camera ``cam`` at instant ``t``; 0 = invalid."""
        camera = self.camera(cam)
        return read_depth_file(self.depth_path(camera.index, t), self.depth, camera.image_size)

    def mask_map(self, cam: CameraKey, t: int) -> Optional[np.ndarray]:
        """bool ``[H, W]`` (True = dynamic) or None when the file records no masks."""
        if not self.has_masks():
            return None
        camera = self.camera(cam)
        probability = self.files["masks"].get("mode") == "probability"
        return read_mask_file(self.mask_path(camera.index, t), camera.image_size, probability=probability)


def _fail(path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{path}: {what}; rewrite it in the page4d-cameras schema (see README 'Evaluate')")


def _matrix(value, shape: tuple[int, int], path: Path, where: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(path, f"{where} is not a numeric matrix") from None
    if matrix.shape != shape:
        raise _fail(path, f"{where} has shape {list(matrix.shape)}, expected {list(shape)}")
    return matrix


def _parse_camera(entry: dict, index: int, num_instants: int, path: Path) -> CameraTrack:
    where = f"cameras[{index}]"
    for key in ("name", "image_size", "frames"):
        if key not in entry:
            raise _fail(path, f"{where} has no '{key}'")
    frames = entry["frames"]
    if not isinstance(frames, list) or len(frames) != num_instants:
        count = len(frames) if isinstance(frames, list) else "no"
        raise _fail(path, f"{where}.frames has {count} entries, num_instants = {num_instants}")
    default_k = entry.get("K")
    default_pose = entry.get("camera_from_world")
    ks, poses, sources, stamps = [], [], [], []
    for t, frame in enumerate(frames):
        at = f"{where}.frames[{t}]"
        if not isinstance(frame, dict):
            raise _fail(path, f"{at} is not an object")
        if frame.get("t", t) != t:
            raise _fail(path, f"{at}.t is {frame.get('t')}, expected {t} (frames in instant order)")
        k_value = frame.get("K", default_k)
        pose_value = frame.get("camera_from_world", default_pose)
        if k_value is None or pose_value is None:
            raise _fail(path, f"{at} has no K / camera_from_world (and the camera gives none)")
        ks.append(_matrix(k_value, (3, 3), path, f"{at}.K"))
        poses.append(_matrix(pose_value, (4, 4), path, f"{at}.camera_from_world"))
        sources.append(int(frame.get("source_frame", t)))
        stamps.append(float(frame.get("timestamp", frame.get("source_frame", t))))
    size = entry["image_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise _fail(path, f"{where}.image_size is {size!r}, expected [width, height] in pixels")
    return CameraTrack(name=str(entry["name"]), index=index, dir=str(entry.get("dir", camera_dir(index))),
                       image_size=(size[0], size[1]), source=entry.get("source"), K=np.stack(ks),
                       camera_from_world=np.stack(poses), source_frames=np.asarray(sources, dtype=np.int64),
                       timestamps=np.asarray(stamps, dtype=np.float64))


def read_cameras_file(path: Union[str, Path]) -> CamerasFile:
    """Parse and check a cameras.json (``DataFormatError`` naming the file and the key on any problem)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: not found; a reconstruction folder holds cameras.json, a ground-truth "
                              f"clip holds gt/cameras.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: not readable JSON ({exc}); rewrite the file") from None
    if not isinstance(data, dict) or data.get("format") != CAMERAS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _fail(path, f"format is {found!r}, expected {CAMERAS_FORMAT!r}")
    for key in ("num_instants", "cameras"):
        if key not in data:
            raise _fail(path, f"has no '{key}'")
    num_instants = data["num_instants"]
    if not isinstance(num_instants, int) or num_instants < 1:
        raise _fail(path, f"num_instants is {num_instants!r}, expected a positive integer")
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        raise _fail(path, "lists no cameras")
    if data.get("num_cameras", len(entries)) != len(entries):
        raise _fail(path, f"lists {len(entries)} cameras but num_cameras = {data['num_cameras']}")
    cameras = [_parse_camera(entry if isinstance(entry, dict) else {}, v, num_instants, path)
               for v, entry in enumerate(entries)]
    names = [camera.name for camera in cameras]
    if len(set(names)) != len(names):
        raise _fail(path, f"camera names repeat ({', '.join(names)})")
    depth = data.get("depth")
    if depth is not None and depth.get("format", "png") not in DEPTH_FORMATS:
        raise _fail(path, f"depth.format is {depth.get('format')!r}, expected one of {', '.join(DEPTH_FORMATS)}")
    fps = data.get("fps")
    return CamerasFile(path=path, root=path.parent, num_instants=num_instants, cameras=cameras, depth=depth,
                       files=dict(data.get("files") or {}), fps=float(fps) if fps else None, raw=data)


def _check_size(values: np.ndarray, size: Optional[tuple[int, int]], path: Path) -> None:
    if size is not None and values.shape[:2] != (size[1], size[0]):
        raise DataFormatError(f"{path}: is {values.shape[1]}x{values.shape[0]} but cameras.json says the camera "
                              f"is {size[0]}x{size[1]}; write maps at the camera's original resolution")


def read_depth_raw(path: Path, record: Optional[dict], size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """One depth map as stored, float32 ``[H, W]`` (png: value * scale), non-finite values kept."""
    record = record or {}
    fmt = record.get("format", path.suffix.lstrip(".") or "png")
    if not path.is_file():
        raise DataFormatError(f"{path}: depth map missing; write every camera's every frame")
    if fmt == "npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: not a readable .npy depth map ({exc}); rewrite it") from None
        values = np.asarray(values, dtype=np.float32)
    else:
        values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if values is None:
            raise DataFormatError(f"{path}: cannot decode the depth map; rewrite it ({fmt})")
        if fmt == "png":
            if values.dtype != np.uint16 or values.ndim != 2:
                raise DataFormatError(f"{path}: depth PNG must be 16-bit single channel, got {values.dtype} "
                                      f"with {values.ndim} dims; write uint16 depth / scale")
            values = values.astype(np.float32) * np.float32(record.get("scale", 1.0))
        else:
            values = np.asarray(values[..., 0] if values.ndim == 3 else values, dtype=np.float32)
    if values.ndim != 2:
        raise DataFormatError(f"{path}: depth map has shape {list(values.shape)}, expected [H, W]")
    _check_size(values, size, path)
    return values


def read_depth_file(path: Path, record: Optional[dict], size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """One depth map as float32 ``[H, W]`` (png: value * scale; npy/exr: float); invalid (<= 0, NaN) -> 0."""
    values = read_depth_raw(path, record, size)
    return np.where(np.isfinite(values) & (values > 0), values, np.float32(0.0)).astype(np.float32)


def read_mask_file(path: Path, size: Optional[tuple[int, int]] = None, probability: bool = False) -> np.ndarray:
    """A dynamic-mask PNG as bool ``[H, W]``: True where non-zero (binary masks: 255 or 1 = dynamic), or
    where above half the range for an 8/16-bit probability mask (``probability``, reconstruct's mode)."""
    if not path.is_file():
        raise DataFormatError(f"{path}: mask missing; write every camera's every frame (or no masks/ at all)")
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise DataFormatError(f"{path}: cannot decode the mask; rewrite it as an 8-bit PNG (255 = dynamic)")
    if values.ndim == 3:
        values = values[..., 0]
    _check_size(values, size, path)
    if not probability:
        return values > 0
    return values > (32767 if values.dtype == np.uint16 else 127)
