"""Write the ``preview/`` folder of a reconstruction (what ``page4d reconstruct`` does unless ``--no-preview``)::

    preview/overview.png                  a few instants: cameras x [input | depth | dynamic mask | confidence]
    preview/depth.mp4  (or depth.gif)     the same grid, one frame per instant
    preview/trajectory.png                top-down and side views of every camera's path
    preview/frames/camXX/frame_TTTT.jpg   the input the network saw, at the camera's original resolution
                                          (so ``page4d view`` can show it in each camera's frustum)

    from page4d_cli.preview import write_previews
    record = write_previews(out_dir, prediction, batch)   # -> run.json["preview"]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from page4d_cli.pipeline.export import camera_dir, frame_name
from page4d_cli.pipeline.types import ClipBatch, ImageTransform, Prediction
from page4d_cli.preview.grid import (
    DEFAULT_TILE_WIDTH,
    GridLayout,
    overview_instants,
    render_grid,
)
from page4d_cli.preview.source import PreviewClip
from page4d_cli.preview.trajectory import write_trajectory_plot
from page4d_cli.preview.video import DEFAULT_FPS, lazy_frames, write_grid_video

PREVIEW_DIR = "preview"
FRAMES_PATTERN = "preview/frames/cam{v:02d}/frame_{t:04d}.jpg"
JPEG_QUALITY = 88


@dataclass(frozen=True)
class PreviewOptions:
    """What the previews look like; the defaults are what ``reconstruct`` writes."""

    overview_instants: int = 3
    tile_width: int = DEFAULT_TILE_WIDTH
    fps: float = DEFAULT_FPS
    video: bool = True
    frames: bool = True  # input frames for ``page4d view``
    allow_mp4: bool = True  # False forces the GIF fallback

    def __post_init__(self) -> None:
        if self.overview_instants < 1:
            raise ValueError(f"overview_instants must be >= 1, got {self.overview_instants}")
        if self.tile_width < 16:
            raise ValueError(f"tile_width must be >= 16 pixels, got {self.tile_width}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


def _write_image(path: Path, bgr: np.ndarray, params: Optional[list] = None) -> None:
    """Encode in memory, write with Python: a full disk raises OSError(ENOSPC) (no libpng/libjpeg noise)."""
    ok, encoded = cv2.imencode(Path(path).suffix, bgr, params or [])
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image")
    Path(path).write_bytes(encoded.tobytes())


def _write_png(path: Path, rgb: np.ndarray) -> None:
    _write_image(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def network_image_to_original(rgb: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """A network-resolution RGB uint8 image ``[H_net, W_net, 3]`` -> ``[h, w, 3]`` at the original resolution.

    Bilinear (``cv2.warpAffine``) with the pixel-centre mapping of ``preprocess.network_map_to_original``
    (which is nearest: right for depth and masks, blocky for a picture); original pixels whose centre falls
    outside the content box are black.
    """
    (sx, sy), (ox, oy) = transform.scale, transform.offset
    width, height = transform.original_size
    # original pixel centre (j + 0.5) maps to network coordinate (j + 0.5) * s + o, i.e. network
    # pixel index (j + 0.5) * s + o - 0.5 in OpenCV's integer-centre convention.
    network_from_original = np.array([[sx, 0.0, 0.5 * sx + ox - 0.5], [0.0, sy, 0.5 * sy + oy - 0.5]])
    out = cv2.warpAffine(rgb, network_from_original, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    x0, y0, x1, y1 = transform.valid_box
    cols = (np.arange(width) + 0.5) * sx + ox
    rows = (np.arange(height) + 0.5) * sy + oy
    out[~((rows >= y0) & (rows < y1))] = 0
    out[:, ~((cols >= x0) & (cols < x1))] = 0
    return out


def write_input_frames(out_dir: Path, batch: ClipBatch) -> None:
    """``preview/frames/camXX/frame_TTTT.jpg``: each network input at the camera's original resolution,
    so it lines up with the depth maps and K in ``page4d view``."""
    for v, transform in enumerate(batch.transforms):
        folder = Path(out_dir) / PREVIEW_DIR / "frames" / camera_dir(v)
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(batch.images.shape[0]):
            rgb = np.clip(np.rint(np.moveaxis(batch.images[t, v], 0, -1) * 255), 0, 255).astype(np.uint8)
            bgr = cv2.cvtColor(network_image_to_original(rgb, transform), cv2.COLOR_RGB2BGR)
            path = folder / frame_name(t, "jpg")
            _write_image(path, bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def write_previews(out_dir: Path, prediction: Prediction, batch: ClipBatch,
                   options: Optional[PreviewOptions] = None) -> dict:
    """Write every preview into ``out_dir/preview``; return the record for run.json (files, colour ranges,
    seconds per part; the input frames are written in parallel with the rest)."""
    options = PreviewOptions() if options is None else options
    folder = Path(out_dir) / PREVIEW_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # The input frames (warp + JPEG encoding, both outside the GIL) are written by a helper thread while
    # this one draws; leaving the `with` waits for it, also on an error (nothing writes after we return).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="page4d-preview-frames") as pool:
        frames_job = pool.submit(_timed, write_input_frames, out_dir, batch) if options.frames else None
        record = _draw_previews(folder, PreviewClip(prediction, batch), prediction, options)
        if frames_job is not None:
            record["seconds"]["frames"] = round(frames_job.result(), 3)
            record["frames"] = FRAMES_PATTERN
    return record


def _timed(function, *args) -> float:
    clock = time.perf_counter()
    function(*args)
    return time.perf_counter() - clock


def _draw_previews(folder: Path, clip: PreviewClip, prediction: Prediction, options: PreviewOptions) -> dict:
    """overview.png, depth.mp4 (or .gif) and trajectory.png; the record with each part's seconds."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    depth_range, confidence_range = clip.depth_range(), clip.confidence_range()
    instants = overview_instants(clip.num_instants, options.overview_instants)
    layout = GridLayout.for_clip(clip, len(instants), options.tile_width)
    _write_png(folder / "overview.png", render_grid(clip, instants, layout, depth_range, confidence_range))
    seconds["overview"] = time.perf_counter() - clock
    record = {"overview": f"{PREVIEW_DIR}/overview.png", "overview_instants": instants,
              "depth_colour_range": [depth_range.low, depth_range.high],
              "log_confidence_colour_range": [confidence_range.low, confidence_range.high]}

    if options.video:
        clock = time.perf_counter()
        frame_layout = GridLayout.for_clip(clip, 1, options.tile_width)
        frames = lazy_frames(clip.num_instants,
                             lambda t: render_grid(clip, [t], frame_layout, depth_range, confidence_range))
        video = write_grid_video(folder, frames, options.fps, options.allow_mp4)
        seconds["video"] = time.perf_counter() - clock
        record.update(video=f"{PREVIEW_DIR}/{video.name}", video_fps=options.fps)

    clock = time.perf_counter()
    labels = [clip.camera_label(v) for v in range(clip.num_cameras)]
    write_trajectory_plot(folder / "trajectory.png", prediction.extrinsic, labels)
    seconds["trajectory"] = time.perf_counter() - clock
    record["trajectory"] = f"{PREVIEW_DIR}/trajectory.png"
    record["seconds"] = {name: round(value, 3) for name, value in seconds.items()}
    return record
