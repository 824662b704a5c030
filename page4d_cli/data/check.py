"""``page4d data check``: validate ground-truth clips, one line per problem naming the file.

Checked for every clip: gt/cameras.json parses (page4d-cameras schema) and names the input cameras; every
camera has every frame (input frames, depth maps, and masks when the clip has masks); every map has the
camera's size; K is finite with positive focal lengths; camera-from-world is finite, a proper rotation
(R R^T = I, det R = +1) with last row (0, 0, 0, 1); depth is finite, not negative, and each map has some
valid pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from page4d_cli.data.cameras_file import read_depth_raw, read_mask_file
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.gt_clip import GT_DIR, GTClip, list_clips, read_gt_clip
from page4d_cli.pipeline.sources import natural_key

ROTATION_TOLERANCE = 1e-4


@dataclass
class ClipReport:
    """What ``check_clip`` found: ``problems`` are one-line ``<file>: <what>`` strings (empty = valid)."""

    clip: Path
    problems: list[str]
    num_cameras: int = 0
    num_frames: int = 0
    has_masks: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def _matrix_problems(clip: GTClip, where: str) -> list[str]:
    problems = []
    for v, name in enumerate(clip.camera_names):
        for t in range(clip.num_frames):
            at = f"{where}: camera {name} frame {t}"
            K = clip.K(v, t)
            if not np.isfinite(K).all():
                problems.append(f"{at}: K is not finite")
            elif not (K[0, 0] > 0 and K[1, 1] > 0 and np.allclose(K[2], [0, 0, 1])):
                problems.append(f"{at}: K needs fx, fy > 0 and last row (0, 0, 1)")
            pose = clip.cam_from_world(v, t)
            if not np.isfinite(pose).all():
                problems.append(f"{at}: camera_from_world is not finite")
                continue
            R = pose[:3, :3]
            if not np.allclose(pose[3], [0, 0, 0, 1]):
                problems.append(f"{at}: camera_from_world's last row is not (0, 0, 0, 1)")
            if np.abs(R @ R.T - np.eye(3)).max() > ROTATION_TOLERANCE:
                problems.append(f"{at}: camera_from_world's rotation is not orthonormal (R R^T != I)")
            elif np.linalg.det(R) < 0:
                problems.append(f"{at}: camera_from_world's rotation has det -1 (a reflection); flip an axis")
    return problems


def _map_problems(clip: GTClip) -> list[str]:
    problems = []
    files = clip.cameras_file
    for v in range(len(clip.camera_names)):
        size = clip.image_size(v)
        for t in range(clip.num_frames):
            path = files.depth_path(v, t)
            try:
                depth = read_depth_raw(path, files.depth, size)
            except DataFormatError as exc:
                problems.append(str(exc))
            else:
                if not np.isfinite(depth).all():
                    problems.append(f"{path}: {int((~np.isfinite(depth)).sum())} non-finite depth values; "
                                    f"write 0 for invalid pixels")
                elif (depth < 0).any():
                    problems.append(f"{path}: {int((depth < 0).sum())} negative depth values; write 0 for invalid")
                elif not (depth > 0).any():
                    problems.append(f"{path}: no valid depth (all 0)")
            if clip.has_masks:
                try:
                    read_mask_file(files.mask_path(v, t), size)
                except DataFormatError as exc:
                    problems.append(str(exc))
    return problems


def _input_problems(clip: GTClip) -> list[str]:
    """Image-folder cameras: every GT frame's image file must decode to the camera's size (videos were
    checked when the clip was opened: size of the first frame and the frame count)."""
    problems = []
    for v, name in enumerate(clip.camera_names):
        if clip.source(v).kind != "images":
            continue
        for t in range(clip.num_frames):
            try:
                clip.image(v, t)
            except DataFormatError as exc:
                problems.append(str(exc))
    return problems


def check_clip(path: Path) -> ClipReport:
    """All problems of one clip (an unreadable gt/cameras.json or input is one problem)."""
    try:
        clip = read_gt_clip(path)
    except DataFormatError as exc:
        return ClipReport(Path(path), [str(exc)])
    where = str(clip.cameras_file.path)
    problems = _matrix_problems(clip, where) + _map_problems(clip) + _input_problems(clip)
    return ClipReport(clip.root, problems, len(clip.camera_names), clip.num_frames, clip.has_masks)


def clips_to_check(path_or_list) -> list[Path]:
    """Like ``list_clips``, but a folder with a gt/ sub-folder counts as a clip even when its gt/cameras.json
    is missing or broken (so that the problem is reported rather than the clip skipped)."""
    path = Path(path_or_list)
    if path.is_dir():
        if (path / GT_DIR).is_dir():
            return [path]
        candidates = [p for p in path.iterdir() if not p.name.startswith(".") and (p / GT_DIR).is_dir()]
        if candidates:
            return sorted(candidates, key=lambda p: natural_key(p.name))
    return list_clips(path)


def check_clips(path_or_list, progress: Optional[Callable[[int, int], None]] = None) -> list[ClipReport]:
    """``check_clip`` for a clip, a folder of clips or a list file; progress(done, total) per clip."""
    clips = clips_to_check(path_or_list)
    reports = []
    for k, clip in enumerate(clips):
        reports.append(check_clip(clip))
        if progress is not None:
            progress(k + 1, len(clips))
    return reports
