"""``read_clip``: a folder of synchronized cameras in, the network-ready ``ClipBatch`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from page4d_cli.pipeline.decode import iter_frames
from page4d_cli.pipeline.errors import PathLike, WarningLog
from page4d_cli.pipeline.masks import compute_auto_masks, load_external_masks
from page4d_cli.pipeline.options import DEFAULT_MODE, ReadOptions, default_network_width
from page4d_cli.pipeline.preprocess import make_transform, network_size_for, resize_image
from page4d_cli.pipeline.sampling import plan_samples
from page4d_cli.pipeline.sources import discover_cameras
from page4d_cli.pipeline.types import CameraInfo, ClipBatch, ImageTransform

Progress = Optional[Callable[[int, int], None]]  # progress(done, total), counted in (t, v) samples
LARGE_CLIP_BYTES = 4 * 1024**3


def read_clip(folder: PathLike, frames: Optional[int] = None, start: Optional[int] = None,
              end: Optional[int] = None, stride: Optional[int] = None, size: Optional[int] = None, mode: str = DEFAULT_MODE,
              ref_camera: Optional[str] = None, masks_dir: Optional[PathLike] = None, auto_masks: bool = False,
              progress: Progress = None, *, options: Optional[ReadOptions] = None) -> ClipBatch:
    """Discover the cameras in ``folder``, sample T instants, decode and preprocess those frames.

    ``options`` (a ``ReadOptions``, already checked) replaces the keyword arguments, which only
    build one (and are checked by its constructor) for callers that prefer keywords.

    Args:
        folder: one video per camera, or one image sub-folder per camera (see ``sources``).
        frames: T, spread evenly over ``[start, end)``; None = every frame of the span (at ``stride``).
        start, end, stride: frame numbers of the reference camera (end exclusive); see ``sampling``.
        size: network width (multiple of 14); the height keeps camera 0's aspect ratio. None: 518, or
            camera 0's width rounded down to a multiple of 14 when narrower (never upsampled).
        mode: "crop" (cover + centre crop) or "pad" (fit + white padding).
        ref_camera: name of the camera that becomes camera 0 (the world frame).
        masks_dir: external dynamic masks, same layout and names as the cameras.
        auto_masks: estimate dynamic masks by background subtraction (static cameras only).
        progress: ``progress(done, total)``, called as (t, v) samples (and their masks) are ready.

    Returns a ``ClipBatch`` with images ``[T, V, 3, H, W]``, ``frame_indices``/``timestamps`` ``[T, V]``,
    optional ``ext_masks`` ``[T, V, H, W]`` and the notices in ``warnings``.
    Raises ``InputError`` (one line naming the file or option) for input that cannot be used.
    """
    if options is None:
        options = ReadOptions(frames=frames, start=start, end=end, stride=stride, ref_camera=ref_camera, size=size,
                              mode=mode, masks=None if masks_dir is None else Path(masks_dir), auto_masks=auto_masks)
    masks_dir, auto_masks = options.masks, options.auto_masks
    warnings = WarningLog()
    cameras = discover_cameras(folder, ref_camera=options.ref_camera, warnings=warnings)
    plan = plan_samples(cameras, frames=options.frames, start=options.start, end=options.end, stride=options.stride,
                        warnings=warnings)
    width = options.size if options.size is not None else default_network_width(cameras[0].size[0])
    network_size = network_size_for(cameras[0].size, width)
    transforms = [make_transform(cam.size, network_size, options.mode) for cam in cameras]
    _note_sizes(cameras, transforms, warnings)

    T, V = plan.frame_indices.shape
    W, H = network_size
    wants_masks = masks_dir is not None or auto_masks
    input_bytes = T * V * H * W * 4 * (4 if wants_masks else 3)  # float32 RGB (+ mask)
    if input_bytes > LARGE_CLIP_BYTES:
        gib = input_bytes / 1024**3
        warnings.add(f"{T} frames x {V} cameras at {W}x{H} take {gib:.1f} GiB of memory as network input; "
                     f"use --frames or --stride to sample fewer frames if memory runs out")
    total = T * V * (2 if wants_masks else 1)
    done = [0]

    def tick(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress(done[0], total)

    images = np.empty((T, V, 3, H, W), dtype=np.float32)
    for v, camera in enumerate(cameras):
        for index, frame_bgr in iter_frames(camera.path, camera.kind, plan.frame_indices[:, v], camera.size):
            network_image = resize_image(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), transforms[v])
            rows = np.flatnonzero(plan.frame_indices[:, v] == index)
            images[rows, v] = network_image
            tick(len(rows))

    ext_masks = None
    if masks_dir is not None:
        ext_masks = load_external_masks(masks_dir, cameras, plan.frame_indices, transforms, warnings, tick)
    elif auto_masks:
        ext_masks = compute_auto_masks(cameras, plan.frame_indices, transforms, tick=tick)
    return ClipBatch(cameras=cameras, images=images, transforms=transforms, frame_indices=plan.frame_indices,
                     timestamps=plan.timestamps, ext_masks=ext_masks, warnings=list(warnings))


def _note_sizes(cameras: list[CameraInfo], transforms: list[ImageTransform], warnings: WarningLog) -> None:
    """Mention differing camera resolutions (allowed; each camera keeps its own intrinsics)."""
    if len({cam.size for cam in cameras}) <= 1:
        return
    W, H = transforms[0].network_size
    listed = ", ".join(f"{cam.name}: {cam.size[0]}x{cam.size[1]}" for cam in cameras)
    warnings.add(f"cameras have different resolutions ({listed}); each is brought to {W}x{H} "
                 f"({transforms[0].mode}) with its own transform and keeps its own intrinsics")
