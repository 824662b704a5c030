"""Dynamic-object masks for the sampled frames: loaded from the user's files, or estimated.

Output of both entry points: ``[T, V, H, W]`` float32 in {0, 1} at the network size (1 = dynamic),
brought there with the camera's own ``ImageTransform`` using nearest sampling (0 in pad borders).

External masks (``masks_dir``) use the same layout as the cameras and the same camera names:
``masks/cam0/000.png, ...`` (k-th image in natural name order = frame k of cam0) or ``masks/cam0.mp4``.
A pixel is dynamic where the image is non-zero (colour channels; alpha is ignored). Video masks are
lossy-compressed, so there a pixel is dynamic where its grey level is above 127.
"""

from __future__ import annotations

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


def _find_mask_source(masks_dir: Path, camera: CameraInfo) -> tuple[str, Path]:
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
    raise InputError(f"{display_path(masks_dir)}: no masks for camera {camera.name}; add "
                     f"{display_path(folder)}/ (one PNG per frame) or {display_path(folder)}.mp4")


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


def _iter_binary_masks(kind: str, source: Path, camera: CameraInfo, indices: np.ndarray):
    """Yield ``(index, bool [h, w])`` for the distinct needed indices, streaming like the frames."""
    if kind == "images":
        files = list_image_files(source)
        for index in sorted({int(i) for i in indices}):
            mask = _read_mask_image(files[index])
            _check_mask_size(mask, camera, display_path(files[index]))
            yield index, mask
    else:
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
    for v, camera in enumerate(cameras):
        kind, source = _find_mask_source(masks_dir, camera)
        count = len(list_image_files(source)) if kind == "images" else probe_video(source)[2]
        needed = int(frame_indices[:, v].max())
        if needed >= count:
            raise InputError(f"{display_path(source)}: holds {count} masks but frame {needed} of {camera.name} "
                             f"is needed; provide one mask per frame ({camera.num_frames} for {camera.name})")
        if count != camera.num_frames:
            warnings.add(f"{display_path(source)}: {count} masks for {camera.num_frames} frames of "
                         f"{camera.name}; mask k is used for frame k")
        for index, mask in _iter_binary_masks(kind, source, camera, frame_indices[:, v]):
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
