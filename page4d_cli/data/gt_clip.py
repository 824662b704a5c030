"""Read a clip with ground truth: the ``reconstruct`` input layout plus a ``gt/`` folder.

Layout (``XX`` = camera position in gt/cameras.json, two digits; ``TTTT`` = GT frame index)::

    clip/
      cam0.mp4 ... | cam0/frame_0000.png ...   the input, exactly what ``page4d reconstruct`` reads
      gt/cameras.json                          page4d-cameras schema (``pipeline/records.py``): per camera
                                               name, image_size, per frame K, camera_from_world,
                                               source_frame, timestamp; ``depth`` record (format, scale)
      gt/depth/camXX/frame_TTTT.png            16-bit z-depth * scale (or .npy / .exr float32); 0 = invalid
      gt/masks/camXX/frame_TTTT.png            optional dynamic-object masks (non-zero = dynamic)

GT frame ``t`` of a camera is its input frame ``source_frame`` (normally ``t`` itself). Camera arguments
(``cam``) are a camera name or an index into ``camera_names`` (gt/cameras.json order); ``frame`` is the GT
frame index ``t`` in ``0 .. num_frames - 1``.

    clip = read_gt_clip("clips/clip_0000")
    clip.K("cam00", 3), clip.cam_from_world(0, 3), clip.depth(0, 3), clip.mask(0, 3), clip.image(0, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from models.errors import PathLike
from page4d_cli.data.cameras_file import CameraKey, CamerasFile, read_cameras_file
from page4d_cli.data.errors import DataFormatError
from page4d_cli.pipeline import geometry
from page4d_cli.pipeline.decode import iter_frames
from page4d_cli.pipeline.errors import InputError
from page4d_cli.pipeline.sources import discover_cameras, natural_key
from page4d_cli.pipeline.types import CameraInfo

GT_DIR = "gt"
CAMERAS_FILE = "cameras.json"


class GTClip:
    """A ground-truth clip (see the module docstring). Reads maps and frames lazily, on each call.

    Attributes: ``root`` (clip folder), ``camera_names`` (gt/cameras.json order = input natural order
    for clips written by page4d), ``num_frames`` (GT frames per camera), ``fps`` (None if unknown),
    ``cameras_file`` (the parsed gt/cameras.json), ``sources`` (name -> the input camera: video file or
    image folder, ``CameraInfo``).
    """

    def __init__(self, root: Path, cameras_file: CamerasFile, sources: dict[str, CameraInfo]) -> None:
        self.root = root
        self.cameras_file = cameras_file
        self.sources = sources
        self.camera_names: list[str] = cameras_file.camera_names
        self.num_frames: int = cameras_file.num_instants
        self.fps: Optional[float] = cameras_file.fps

    def __repr__(self) -> str:
        return (f"GTClip({str(self.root)!r}, cameras={self.camera_names}, frames={self.num_frames}, "
                f"masks={self.has_masks})")

    # ------------------------------------------------------------------ per camera
    def camera_index(self, cam: CameraKey) -> int:
        return self.cameras_file.camera(cam).index

    def source(self, cam: CameraKey) -> CameraInfo:
        """The input of camera ``cam``: ``.path`` (video or image folder), ``.kind`` ("video" | "images")."""
        return self.sources[self.cameras_file.camera(cam).name]

    def image_size(self, cam: CameraKey) -> tuple[int, int]:
        """Original (W, H) of camera ``cam``."""
        return self.cameras_file.camera(cam).image_size

    @property
    def has_masks(self) -> bool:
        return self.cameras_file.has_masks()

    # ------------------------------------------------------------------ per camera and frame
    def _check_frame(self, frame: int) -> int:
        if not 0 <= int(frame) < self.num_frames:
            raise IndexError(f"{self.root}: frame {frame} out of range 0..{self.num_frames - 1}")
        return int(frame)

    def K(self, cam: CameraKey, frame: int) -> np.ndarray:
        """float64 ``[3, 3]`` intrinsics in original pixels (pixel-centre convention)."""
        return self.cameras_file.camera(cam).K[self._check_frame(frame)].copy()

    def cam_from_world(self, cam: CameraKey, frame: int) -> np.ndarray:
        """float64 ``[4, 4]`` camera-from-world (OpenCV axes)."""
        return self.cameras_file.camera(cam).camera_from_world[self._check_frame(frame)].copy()

    def timestamp(self, cam: CameraKey, frame: int) -> float:
        """Seconds (source frame / fps; the source frame index when fps is unknown)."""
        return float(self.cameras_file.camera(cam).timestamps[self._check_frame(frame)])

    def source_frame(self, cam: CameraKey, frame: int) -> int:
        """Index of GT frame ``frame`` in the camera's input video / image folder."""
        return int(self.cameras_file.camera(cam).source_frames[self._check_frame(frame)])

    def frame_of_source(self, cam: CameraKey, source_frame: int) -> Optional[int]:
        """The GT frame whose input frame is ``source_frame``; None when the GT has no such frame."""
        hits = np.flatnonzero(self.cameras_file.camera(cam).source_frames == int(source_frame))
        return int(hits[0]) if hits.size else None

    def depth(self, cam: CameraKey, frame: int) -> np.ndarray:
        """float32 ``[H, W]`` z-depth at the original resolution; 0 = invalid."""
        return self.cameras_file.depth_map(cam, self._check_frame(frame))

    def mask(self, cam: CameraKey, frame: int) -> Optional[np.ndarray]:
        """bool ``[H, W]`` dynamic-object mask, or None when the clip has no gt/masks."""
        return self.cameras_file.mask_map(cam, self._check_frame(frame))

    def image(self, cam: CameraKey, frame: int) -> np.ndarray:
        """uint8 RGB ``[H, W, 3]``: the input frame ``source_frame(cam, frame)`` decoded."""
        source = self.source(cam)
        index = self.source_frame(cam, frame)
        try:
            for _, bgr in iter_frames(source.path, source.kind, [index], source.size):
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        except InputError as exc:
            raise DataFormatError(str(exc)) from None
        raise DataFormatError(f"{source.path}: frame {index} could not be read; re-export the camera")

    def world_points(self, cam: CameraKey, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(points float64 ``[H, W, 3]`` in the GT world frame, valid bool ``[H, W]``) from depth + camera."""
        depth = self.depth(cam, frame)
        points = geometry.unproject_depth(depth, self.K(cam, frame), self.cam_from_world(cam, frame))
        return points, geometry.valid_depth(depth)


def _clip_root(path: Path) -> Path:
    """Accept the clip folder, its gt/ folder or gt/cameras.json."""
    if path.name == CAMERAS_FILE and path.parent.name == GT_DIR:
        return path.parent.parent
    if path.name == GT_DIR and (path / CAMERAS_FILE).is_file():
        return path.parent
    return path


def is_gt_clip(path: PathLike) -> bool:
    """True when ``path`` is a folder holding gt/cameras.json."""
    return (Path(path) / GT_DIR / CAMERAS_FILE).is_file()


def read_gt_clip(path: PathLike) -> GTClip:
    """Open a ground-truth clip: parse gt/cameras.json and find the input cameras (no pixels read).

    Raises ``DataFormatError`` (a ``Page4DError``, one line naming the file) when gt/cameras.json is missing
    or malformed, or the input cameras do not match it (names, sizes, too few frames).
    """
    root = _clip_root(Path(path))
    if not root.is_dir():
        raise DataFormatError(f"{root}: clip folder not found; check the path")
    cameras_path = root / GT_DIR / CAMERAS_FILE
    if not cameras_path.is_file():
        raise DataFormatError(f"{cameras_path}: not found; a ground-truth clip is the reconstruct input layout "
                              f"plus gt/cameras.json (make one with 'page4d data synth' or write_gt)")
    cameras_file = read_cameras_file(cameras_path)
    if cameras_file.depth is None:
        raise DataFormatError(f"{cameras_path}: has no 'depth' record; ground truth needs depth maps "
                              f"(gt/depth/camXX/frame_TTTT.png and depth.scale)")
    try:
        found = discover_cameras(root)
    except InputError as exc:
        raise DataFormatError(str(exc)) from None
    by_name = {camera.name: camera for camera in found}
    missing = [name for name in cameras_file.camera_names if name not in by_name]
    extra = [name for name in by_name if name not in cameras_file.camera_names]
    if missing or extra:
        raise DataFormatError(
            f"{cameras_path}: cameras differ from the input in {root} (only in gt: {', '.join(missing) or '-'}; "
            f"only in the input: {', '.join(extra) or '-'}); name the gt cameras after the input videos/folders")
    for track in cameras_file.cameras:
        source = by_name[track.name]
        if tuple(source.size) != tuple(track.image_size):
            raise DataFormatError(f"{source.path}: frames are {source.size[0]}x{source.size[1]} but {cameras_path} "
                                  f"says {track.image_size[0]}x{track.image_size[1]}; fix image_size")
        last = int(track.source_frames.max())
        if last >= source.num_frames or int(track.source_frames.min()) < 0:
            raise DataFormatError(f"{source.path}: has {source.num_frames} frames but {cameras_path} refers to "
                                  f"source frame {last}; add the frames or fix source_frame")
    return GTClip(root, cameras_file, by_name)


def list_clips(path_or_list: PathLike) -> list[Path]:
    """Clip folders from a clip, a folder of clips (sub-folders holding gt/cameras.json, natural order)
    or a text file listing clips (one path per line, relative to the file; blank lines and ``#`` ignored).
    """
    path = Path(path_or_list)
    if path.is_file():
        clips = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            clip = Path(entry) if Path(entry).is_absolute() else path.parent / entry
            if not is_gt_clip(clip):
                raise DataFormatError(f"{path}: line {number}: {clip} is not a clip with gt/cameras.json; "
                                      f"fix or remove the line")
            clips.append(clip)
        if not clips:
            raise DataFormatError(f"{path}: lists no clips; write one clip folder per line")
        return clips
    if not path.is_dir():
        raise DataFormatError(f"{path}: not found; pass a clip, a folder of clips or a text file listing clips")
    if is_gt_clip(path):
        return [path]
    clips = sorted((p for p in path.iterdir() if not p.name.startswith(".") and is_gt_clip(p)),
                   key=lambda p: natural_key(p.name))
    if not clips:
        raise DataFormatError(f"{path}: holds no clips (no gt/cameras.json in it or its sub-folders); make some "
                              f"with 'page4d data synth {path}'")
    return clips
