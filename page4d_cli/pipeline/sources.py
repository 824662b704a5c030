"""Find the cameras of a rig in a folder and read their metadata (no pixels are kept).

Accepted layouts (one or the other, never both):

- one video file per camera: ``cams/cam0.mp4, cams/cam1.mp4, ...`` (mp4, mov, avi, mkv, webm, m4v;
  any letter case); the camera name is the file stem;
- one sub-folder of images per camera: ``cams/cam0/000.png, ...`` (png, jpg, jpeg); the camera name is
  the folder name and the frames are ordered by natural name order (``2.png`` before ``10.png``).

Hidden entries (names starting with ".") and other files (json, txt, ...) are ignored. In the video
layout, sub-folders holding no images (e.g. ``masks/`` with per-camera sub-folders) are ignored too.
Cameras are ordered by natural name order; ``ref_camera`` moves one camera to index 0 because camera 0
defines the world frame.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import cv2

from page4d_cli.pipeline.errors import InputError, PathLike, WarningLog, display_path
from page4d_cli.pipeline.types import CameraInfo

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
LAYOUT_HINT = ("expected one video per camera (cam0.mp4, cam1.mp4, ...) or one sub-folder of images "
               "per camera (cam0/000.png, ...)")


def reencode_advice(path: Path) -> str:
    """How to re-encode a broken camera video WITHOUT writing into the clip folder (where every video
    is read as a camera: a ``cam1_fixed.mp4`` next to ``cam1.mp4`` would become one more camera)."""
    path = Path(path)
    fixed = path.absolute().parent.parent / f"{path.stem}_fixed{path.suffix}"  # never inside the clip folder
    return (f"re-encode it outside the clip folder and put it in place of the original, e.g. "
            f"ffmpeg -i {display_path(path)} -c:v libx264 {display_path(fixed)} && "
            f"mv {display_path(fixed)} {display_path(path)}")


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``cam2 < cam10``, ``frame_9.png < frame_10.png``."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part), part) if part.isdigit() else (1, part.lower(), part) for part in parts)


def _visible_children(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, natural name order, hidden files skipped."""
    return [p for p in _visible_children(folder) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def _check_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise InputError(f"{display_path(folder)}: {what} folder not found; check the path")
    if not folder.is_dir():
        raise InputError(f"{display_path(folder)}: is a file, not a folder; pass the folder that holds "
                         f"the {what} ({LAYOUT_HINT})")


def find_camera_entries(folder: Path, what: str = "camera") -> tuple[str, list[Path]]:
    """Return ``(kind, entries)``: kind "video" (video files) or "images" (image sub-folders).

    ``what`` only words the messages ("camera", "mask"). Raises ``InputError`` for a missing or
    empty folder, a mix of both layouts, and (image layout) a sub-folder with no images.
    """
    folder = Path(folder)
    _check_folder(folder, what)
    children = _visible_children(folder)
    videos = [p for p in children if is_video_file(p)]
    sub_folders = [p for p in children if p.is_dir()]
    image_folders = [p for p in sub_folders if list_image_files(p)]
    if videos and image_folders:
        raise InputError(
            f"{display_path(folder)}: mixes videos ({videos[0].name}, ...) and image folders "
            f"({image_folders[0].name}/, ...); use one layout for every {what}: either all videos or all "
            f"image folders")
    if videos:
        _check_unique_stems(folder, videos)
        return "video", videos
    if image_folders:
        # A folder with neither images nor sub-folders sits where a camera is expected: it is a camera
        # with zero frames, not something to skip silently.
        for sub in sub_folders:
            if sub not in image_folders and not any(p.is_dir() for p in _visible_children(sub)):
                raise InputError(
                    f"{display_path(sub)}: {what} folder holds no images (png/jpg/jpeg); add its frames "
                    f"or remove the folder")
        return "images", image_folders
    if list_image_files(folder):
        raise InputError(
            f"{display_path(folder)}: holds images directly; put each {what}'s frames in its own "
            f"sub-folder (e.g. {display_path(folder / 'cam0' / '000.png')})")
    raise InputError(f"{display_path(folder)}: no {what}s found; {LAYOUT_HINT}")


def _check_unique_stems(folder: Path, videos: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for video in videos:
        if video.stem in seen:
            raise InputError(
                f"{display_path(folder)}: two videos for camera '{video.stem}' ({seen[video.stem].name}, "
                f"{video.name}); keep one file per camera name")
        seen[video.stem] = video


def probe_video(path: Path, warnings: Optional[WarningLog] = None) -> tuple[tuple[int, int], Optional[float], int]:
    """Return ``((width, height), fps or None, frame count)`` of a video, validated by decoding.

    The container's frame count (CAP_PROP_FRAME_COUNT) is an estimate that can be wrong (variable
    frame rate, truncated files, missing index), so it is trusted only if its last frame decodes and
    nothing decodes after it; otherwise the frames are counted by grabbing them one by one
    (streaming: nothing is kept in memory).
    """
    name = display_path(path)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{name}: cannot open the video (corrupt or unsupported container); "
                             f"{reencode_advice(path)}")
        ok, first = capture.read()
        if not ok or first is None:
            raise InputError(f"{name}: cannot decode any frame (corrupt or unsupported codec); "
                             f"{reencode_advice(path)}")
        size = (int(first.shape[1]), int(first.shape[0]))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if reported > 0 and _last_frame_is(capture, reported):
            count = reported
        else:
            count = _count_frames(path)
            if warnings is not None and reported > 0 and count != reported:
                warnings.add(f"{name}: the file header announces {reported} frames but {count} decode; "
                             f"using {count}")
    finally:
        capture.release()
    if count == 0:
        raise InputError(f"{name}: holds zero frames; re-export the video or remove it")
    if not (math.isfinite(fps) and 0.0 < fps <= 1000.0):
        if warnings is not None:
            warnings.add(f"{name}: frame rate unknown; using frame numbers as time (assumes the cameras "
                         f"run at the same rate)")
        fps_or_none: Optional[float] = None
    else:
        fps_or_none = fps
    return size, fps_or_none, count


def _last_frame_is(capture: cv2.VideoCapture, count: int) -> bool:
    """True if frame ``count - 1`` decodes and no frame follows it."""
    if count == 1:
        return not capture.grab()  # frame 0 was just read
    if not capture.set(cv2.CAP_PROP_POS_FRAMES, count - 1):
        return False
    if not capture.grab():
        return False
    return not capture.grab()


def _count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def probe_image_folder(folder: Path) -> tuple[tuple[int, int], int]:
    """Return ``((width, height), frame count)`` from the first image; checks every file's header.

    Only the first image is decoded here; each sampled image is decoded (and its size checked) when
    the frames are read. ``cv2.haveImageReader`` reads just the file signature, so a non-image file
    named ``.png`` is reported now rather than midway through reading.
    """
    files = list_image_files(folder)
    if not files:
        raise InputError(f"{display_path(folder)}: camera folder holds no images (png/jpg/jpeg); add its "
                         f"frames or remove the folder")
    for file in files:
        if not cv2.haveImageReader(str(file)):
            raise InputError(f"{display_path(file)}: not a readable image (corrupt or wrong extension); "
                             f"re-export it or remove it")
    first = read_image_file(files[0])
    return (int(first.shape[1]), int(first.shape[0])), len(files)


def read_image_file(path: Path):
    """Decode one image file as BGR uint8 ``[H, W, 3]``; ``InputError`` naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{display_path(path)}: cannot decode the image (corrupt or unsupported); "
                         f"re-export it or remove it")
    return image


def order_cameras(cameras: list[CameraInfo], ref_camera: Optional[str]) -> list[CameraInfo]:
    """Natural name order, with ``ref_camera`` (if given) moved to index 0."""
    ordered = sorted(cameras, key=lambda cam: natural_key(cam.name))
    if ref_camera is None:
        return ordered
    names = [cam.name for cam in ordered]
    if ref_camera not in names:
        raise InputError(f"--ref-camera {ref_camera}: no such camera; choose one of {', '.join(names)}")
    index = names.index(ref_camera)
    return [ordered[index]] + ordered[:index] + ordered[index + 1:]


def discover_cameras(folder: PathLike, ref_camera: Optional[str] = None,
                     warnings: Optional[WarningLog] = None) -> list[CameraInfo]:
    """Find and probe every camera in ``folder``; camera 0 is ``ref_camera`` (or the first by name).

    Notices (single camera, unreliable frame counts, unknown fps) go to ``warnings``.
    """
    folder = Path(folder)
    kind, entries = find_camera_entries(folder, "camera")
    cameras = []
    for entry in entries:
        if kind == "video":
            size, fps, count = probe_video(entry, warnings)
            cameras.append(CameraInfo(name=entry.stem, path=entry, kind="video", size=size, fps=fps,
                                      num_frames=count))
        else:
            size, count = probe_image_folder(entry)
            cameras.append(CameraInfo(name=entry.name, path=entry, kind="images", size=size, fps=None,
                                      num_frames=count))
    cameras = order_cameras(cameras, ref_camera)
    if len(cameras) == 1 and warnings is not None:
        warnings.add(f"{display_path(folder)}: only one camera ({cameras[0].name}) found; the result is a "
                     f"single-view reconstruction (add synchronized cameras for multi-view geometry)")
    return cameras
