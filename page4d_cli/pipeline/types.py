"""Data passed between the stages of the pipeline (reading -> network -> export).

Conventions, used everywhere in ``page4d_cli.pipeline``:

- Index order is (t, v): T sampled instants x V cameras, camera order = the order of ``CameraInfo``.
- Images are RGB float32 in [0, 1], channels first: ``[T, V, 3, H, W]`` at the *network* resolution
  (H, W multiples of 14; every camera is brought to the same network size).
- Cameras: ``extrinsic`` is camera-from-world ``[R | t]`` (4 x 4 here), OpenCV axes (x right, y down,
  z forward). The world frame is the reference camera (``ClipBatch.reference``) at the first sampled
  instant: ``read_clip`` puts it at index 0 (the network's reference slot); the outputs keep the input
  order (``world_frame.to_input_order``).
  ``intrinsic`` K is in *network* pixels inside a ``Prediction``; ``ImageTransform`` maps it to the
  camera's original pixels.
- Depth is z-depth along the camera's optical axis, in world units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class ImageTransform:
    """How one camera's original frame was brought to the network size, and back.

    network_xy = original_xy * scale + offset  (pixel-centre convention: the centre of original
    pixel (i, j) is (j + 0.5, i + 0.5) and maps to the centre of the corresponding network pixel).

    ``mode`` is "crop" (scale to cover, centre-crop) or "pad" (scale to fit, pad with white/black);
    ``valid_box`` is the (x0, y0, x1, y1) region of the network image that holds image content
    (the whole image for crop; the un-padded part for pad).
    """

    original_size: tuple[int, int]  # (width, height) of the camera's frames
    network_size: tuple[int, int]  # (width, height) fed to the network
    scale: tuple[float, float]  # (sx, sy)
    offset: tuple[float, float]  # (ox, oy)
    mode: str
    valid_box: tuple[int, int, int, int]


@dataclass
class CameraInfo:
    """One camera of the rig as found on disk."""

    name: str  # e.g. "cam0" (file stem or folder name)
    path: Path  # video file or image folder
    kind: str  # "video" or "images"
    size: tuple[int, int]  # original (width, height)
    fps: Optional[float]  # None for image folders (frame index used as time unless --fps given)
    num_frames: int


@dataclass
class ClipBatch:
    """The sampled, preprocessed clip: what the network sees, plus the way back to the originals."""

    cameras: list[CameraInfo]
    images: np.ndarray  # [T, V, 3, H, W] float32 in [0, 1]
    transforms: list[ImageTransform]  # one per camera
    frame_indices: np.ndarray  # [T, V] int: source frame index of each sample in its camera
    timestamps: np.ndarray  # [T, V] float seconds (frame index / fps; index when fps unknown)
    ext_masks: Optional[np.ndarray] = None  # [T, V, H, W] float32 in {0, 1} (1 = dynamic), network size
    warnings: list[str] = field(default_factory=list)
    reference: int = 0  # index in ``cameras`` of the reference camera (the world frame at t = 0)


@dataclass
class Prediction:
    """What the network (or an oracle) predicts for a clip, as numpy, at the network resolution."""

    extrinsic: np.ndarray  # [T, V, 4, 4] camera-from-world
    intrinsic: np.ndarray  # [T, V, 3, 3] network pixels
    depth: np.ndarray  # [T, V, H, W] z-depth
    depth_conf: np.ndarray  # [T, V, H, W] >= 1 (VGGT's 1 + exp)
    world_points: Optional[np.ndarray] = None  # [T, V, H, W, 3] from the point head
    world_points_conf: Optional[np.ndarray] = None  # [T, V, H, W]
    dynamic_mask: Optional[np.ndarray] = None  # [T, V, H, W] in [0, 1] (1 = dynamic)


class Reporter:
    """Receives what ``reconstruct`` has to say; this base class ignores it all (quiet library use).

    ``stage(name, done, total, detail)``: progress of a stage: "read" (decoded samples), "load"
    (total None while loading), "network" (forward-pass steps over all windows), "write" (files, as
    ``write_outputs.export_reconstruction`` reports them). ``warning``: a notice about the input or
    the run (one line). ``info``: how the run proceeds (e.g. windowing).
    ``page4d_cli.weights.fetch.fetch_weights`` reports through the same protocol (stages
    ``download <file>`` and ``verify <file>`` in bytes; licences, resumes and bad cached copies as lines),
    and so does training (``page4d_cli.train.loop.train``: stages "train" in optimizer steps and "eval"
    in held-out clips, which starts again at each evaluation; skipped steps as warnings).
    """

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def window_done(self, index: int, count: int, start: int, stop: int) -> None:
        """Network window ``index`` (1-based) of ``count``, instants ``[start, stop)``, has finished."""
