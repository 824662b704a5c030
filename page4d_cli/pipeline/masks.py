"""Dynamic-object masks for the sampled frames: loaded from the user's files, or estimated.

Output of both entry points: ``[T, V, H, W]`` float32 in {0, 1} at the network size (1 = dynamic),
brought there with the camera's own ``ImageTransform`` using nearest sampling (0 in pad borders).

External masks (``masks_dir``) use the same camera names as the input, one of:

- ``masks/cam0/008.png`` (any png/jpg): matched to frames by NAME, never by position. For a video
  camera the number in the file name is the frame number (``8.png``, ``008.png``, ``frame_0008.png``
  and ``mask8.png`` are all frame 8); for an image-folder camera a mask has its frame's file stem
  (frame ``cam0/img_0008.jpg`` -> mask ``masks/cam0/img_0008.png``) or, failing that, its frame's number.
  A missing ``008.png`` is an error naming that file, it never shifts ``009.png`` onto frame 8.
- ``masks/cam0.mp4``: frame k of the mask video is the mask of frame k.
- the ``masks/`` (or ``masks/auto/``) folder of an earlier ``page4d reconstruct`` output
  (``masks/camXX/frame_TTTT.png`` next to its ``cameras.json``): cameras.json maps each ``camXX`` to
  its camera name and each instant t to the source frame, so a run's masks can be fed back in.

A pixel is dynamic where the image is non-zero (colour channels; alpha is ignored). Video masks are
lossy-compressed, so there a pixel is dynamic where its grey level is above 127.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from page4d_cli.pipeline.decode import iter_frames, iter_video_frames
from page4d_cli.pipeline.errors import InputError, PathLike, WarningLog, display_path
from page4d_cli.pipeline.preprocess import resize_mask
from page4d_cli.pipeline.sources import VIDEO_EXTENSIONS, list_image_files, probe_video
from page4d_cli.pipeline.types import CameraInfo, ImageTransform

Tick = Optional[Callable[[int], None]]  # called with the number of (t, v) samples just finished


def _find_mask_source(masks_dir: Path, camera: CameraInfo, run_cameras: Optional[dict]) -> tuple[str, Path]:
    folder = masks_dir / camera.name
    if folder.is_dir():
        if not list_image_files(folder):
            raise InputError(f"{display_path(folder)}: holds no mask images (png/jpg); add one mask per "
                             f"frame of {camera.name}")
        return "images", folder
    for candidate in sorted(masks_dir.iterdir()):
        if (candidate.is_file() and candidate.stem == camera.name and not candidate.name.startswith(".")
                and candidate.suffix.lower() in VIDEO_EXTENSIONS):
            return "video", candidate
    if run_cameras is not None and camera.name in run_cameras:
        folder = masks_dir / run_cameras[camera.name]["dir"]
        if folder.is_dir():
            return "run", folder
    raise InputError(f"{display_path(masks_dir)}: no masks for camera {camera.name}; add "
                     f"{display_path(folder)}/ (one PNG per frame) or {display_path(folder)}.mp4")


def _run_cameras(masks_dir: Path) -> Optional[dict]:
    """``{camera name: cameras.json entry}`` when ``masks_dir`` is the masks/ folder of a page4d output."""
    # masks/ (the network's masks) or masks/auto/ (the --auto-masks a run was given) of an output folder
    records = [folder / "cameras.json" for folder in (masks_dir.parent, masks_dir.parent.parent)]
    record = next((path for path in records if path.is_file()), None)
    if record is None:
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != "page4d-cameras":
        return None
    return {camera["name"]: camera for camera in data.get("cameras", [])
            if isinstance(camera, dict) and "name" in camera and "dir" in camera}


def _number_in(stem: str) -> Optional[int]:
    """The frame number a file name carries: its last run of digits (``frame_0008`` -> 8), or None."""
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


def _index_masks(files: list[Path], key) -> dict:
    """``{key(file): file}``; two masks for one frame is an error naming both."""
    index: dict = {}
    for file in files:
        value = key(file)
        if value is None:
            continue
        if value in index:
            raise InputError(f"{display_path(file)}: a second mask for the frame of {index[value].name}; "
                             "keep one mask per frame")
        index[value] = file
    return index


def _expected_name(files: list[Path], number: int) -> str:
    """The file name a mask of frame ``number`` would have, in the style of the masks present."""
    styles = [re.match(r"^(.*?)(\d+)(\D*)$", file.stem) for file in files]
    styles = [(match, file.suffix) for match, file in zip(styles, files) if match]
    if not styles:
        return f"{number:03d}.png"
    (prefix, _, suffix), extension = styles[0][0].groups(), styles[0][1]
    padded = [len(match.group(2)) for match, _ in styles if len(match.group(2)) > 1 and match.group(2)[0] == "0"]
    return f"{prefix}{number:0{max(padded, default=1)}d}{suffix}{extension}"


def mask_files_for_frames(kind: str, source: Path, camera: CameraInfo, indices, run_camera: Optional[dict] = None
                          ) -> dict[int, Path]:
    """``{frame index: mask file}`` for the needed frames of one camera (image masks), matched by name.

    ``InputError`` naming the missing file when a needed frame has no mask.
    """
    files = list_image_files(source)
    needed = sorted({int(i) for i in indices})
    where = camera.name
    if kind == "run":
        instant_of = {int(frame["source_frame"]): int(frame["t"]) for frame in run_camera.get("frames", [])}
        by_name = {file.name: file for file in files}
        found = {}
        for index in needed:
            t = instant_of.get(index)
            if t is None:
                kept = ", ".join(str(frame) for frame in sorted(instant_of))
                raise InputError(f"{display_path(source)}: no mask for frame {index} of {where}; the run that "
                                 f"wrote these masks sampled frames {kept} (its cameras.json); sample those "
                                 "frames, or give masks for every frame")
            name = f"frame_{t:04d}.png"
            if name not in by_name:
                raise InputError(f"{display_path(source / name)}: not found, the mask of frame {index} of {where}; "
                                 "restore it from the run that wrote this folder")
            found[index] = by_name[name]
        return found
    by_number = _index_masks(files, lambda file: _number_in(file.stem))
    frame_files = list_image_files(camera.path) if camera.kind == "images" else []
    by_stem = _index_masks(files, lambda file: file.stem) if frame_files else {}
    found = {}
    for index in needed:
        if frame_files:
            stem = frame_files[index].stem
            number = _number_in(stem)
            mask = by_stem.get(stem) or (by_number.get(number) if number is not None else None)
            expected = f"{stem}.png"
        else:
            mask = by_number.get(index)
            expected = _expected_name(files, index)
        if mask is None:
            frame = f"frame {index} of {where}" + (f" ({frame_files[index].name})" if frame_files else "")
            raise InputError(f"{display_path(source / expected)}: not found, the mask of {frame}; masks are matched "
                             f"to frames by the number in their name ({display_path(source)} holds {len(files)} "
                             "masks); add it")
        found[index] = mask
    return found


def _read_mask_image(path: Path) -> np.ndarray:
    """Binary ``[h, w]`` bool from an image file of any bit depth; alpha ignored."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{display_path(path)}: cannot decode the mask image; re-export it as PNG")
    if image.ndim == 3:
        image = image[..., :3].max(axis=2)
    return image != 0


def _check_mask_size(mask: np.ndarray, camera: CameraInfo, where: str) -> None:
    size = (int(mask.shape[1]), int(mask.shape[0]))
    if size != tuple(camera.size):
        raise InputError(f"{where}: mask is {size[0]}x{size[1]} but {camera.name}'s frames are "
                         f"{camera.size[0]}x{camera.size[1]}; masks must have their camera's frame size")


def _iter_binary_masks(kind: str, source: Path, camera: CameraInfo, indices: np.ndarray,
                       run_camera: Optional[dict] = None):
    """Yield ``(index, bool [h, w])`` for the distinct needed indices, streaming like the frames."""
    if kind in ("images", "run"):
        for index, file in sorted(mask_files_for_frames(kind, source, camera, indices, run_camera).items()):
            mask = _read_mask_image(file)
            _check_mask_size(mask, camera, display_path(file))
            yield index, mask
    else:
        count = probe_video(source)[2]
        needed = int(np.max(indices))
        if needed >= count:
            raise InputError(f"{display_path(source)}: holds {count} masks but frame {needed} of {camera.name} "
                             f"is needed; provide one mask per frame ({camera.num_frames} for {camera.name})")
        for index, frame in iter_video_frames(source, indices):
            _check_mask_size(frame, camera, f"{display_path(source)} frame {index}")
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) > 127


def check_masks_dir(masks_dir: PathLike) -> Path:
    """``masks_dir`` as a Path, or ``InputError`` when it is missing or a file (checked before any work)."""
    masks_dir = Path(masks_dir)
    if masks_dir.is_file():
        raise InputError(f"{display_path(masks_dir)}: is a file, not a masks folder; pass the folder that holds "
                         "one mask folder or mask video per camera (same names as the cameras)")
    if not masks_dir.is_dir():
        raise InputError(f"{display_path(masks_dir)}: masks folder not found; pass a folder with one mask "
                         f"folder or mask video per camera (same names as the cameras)")
    return masks_dir


def load_external_masks(masks_dir: PathLike, cameras: list[CameraInfo], frame_indices: np.ndarray,
                        transforms: list[ImageTransform], warnings: Optional[WarningLog] = None,
                        tick: Tick = None) -> np.ndarray:
    """Masks of every camera at ``frame_indices`` ``[T, V]`` -> ``[T, V, H, W]`` float32 in {0, 1}."""
    masks_dir = check_masks_dir(masks_dir)
    warnings = WarningLog() if warnings is None else warnings
    T, V = frame_indices.shape
    W, H = transforms[0].network_size
    out = np.zeros((T, V, H, W), dtype=np.float32)
    run_cameras = _run_cameras(masks_dir)
    for v, camera in enumerate(cameras):
        kind, source = _find_mask_source(masks_dir, camera, run_cameras)
        run_camera = run_cameras.get(camera.name) if run_cameras is not None else None
        for index, mask in _iter_binary_masks(kind, source, camera, frame_indices[:, v], run_camera):
            rows = np.flatnonzero(frame_indices[:, v] == index)
            out[rows, v] = resize_mask(mask, transforms[v])
            if tick is not None:
                tick(len(rows))
    return out


def _make_subtractor(method: str, history: int):
    if method == "mog2":
        subtractor = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=36, detectShadows=True)
        # A colour is background once it explains 60 % of a pixel's history (OpenCV's default 90 % also
        # absorbs an object that merely passes over the pixel for a few frames of a short clip), and a
        # pixel must be 6 sigma away (default 4) because compressed video has blocky noise.
        subtractor.setBackgroundRatio(0.6)
        return subtractor
    if method == "knn":
        return cv2.createBackgroundSubtractorKNN(history=history, dist2Threshold=400.0, detectShadows=True)
    raise InputError(f"auto masks method {method!r}: unknown; use 'mog2' or 'knn'")


def _clean(foreground: np.ndarray) -> np.ndarray:
    """Binary mask from a subtractor's output: shadows (127) are static; remove specks, fill holes."""
    binary = (foreground > 200).astype(np.uint8)
    side = max(3, (min(foreground.shape[:2]) // 120) | 1)  # ~1 % of the image, odd
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    return binary.astype(bool)


def compute_auto_masks(cameras: list[CameraInfo], frame_indices: np.ndarray, transforms: list[ImageTransform],
                       method: str = "mog2", tick: Tick = None) -> np.ndarray:
    """Estimate dynamic masks by background subtraction -> ``[T, V, H, W]`` float32 in {0, 1}.

    Per camera, in two streaming passes over frames ``0 .. last sampled``: the first teaches an OpenCV
    background model (MOG2 or KNN) with every frame; the second compares each sampled frame with that
    model (learning rate 0), then a light opening/closing removes specks and fills small holes. Learning
    from the whole span first, rather than only from frames before each sample, gives early samples
    (e.g. frame 0, which has no past) a background model too.

    Not appropriate when:
      - the camera moves (handheld, on a vehicle): the whole image changes, so everything is "dynamic";
      - the lighting changes (clouds, lamps, auto exposure): large regions light up as false positives;
      - the clip is very short (a few frames): the model cannot separate background from objects;
      - objects stop moving, or stay still for most of the clip: they become background and vanish
        from the mask (and objects that leave reveal "ghost" regions);
      - the moving object covers most of the frame or has the background's colour.
    Use external masks (a segmentation model's output) in those cases.
    """
    T, V = frame_indices.shape
    W, H = transforms[0].network_size
    out = np.zeros((T, V, H, W), dtype=np.float32)
    for v, camera in enumerate(cameras):
        last = int(frame_indices[:, v].max())
        subtractor = _make_subtractor(method, history=max(2, last + 1))
        for seen, (_, frame) in enumerate(iter_frames(camera.path, camera.kind, range(last + 1), camera.size)):
            # Rate 1/n weighs every frame equally (OpenCV's default favours the first frames).
            subtractor.apply(frame, learningRate=1.0 / (seen + 1))
        for index, frame in iter_frames(camera.path, camera.kind, frame_indices[:, v], camera.size):
            mask = _clean(subtractor.apply(frame, learningRate=0.0))
            rows = np.flatnonzero(frame_indices[:, v] == index)
            out[rows, v] = resize_mask(mask, transforms[v])
            if tick is not None:
                tick(len(rows))
    return out
