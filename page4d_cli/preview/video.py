"""``preview/depth.mp4``: the preview grid over every instant (one frame per instant), for spotting flicker.

Written through imageio: H.264 MP4 with its ffmpeg plugin (``imageio-ffmpeg``); when that plugin or
its ffmpeg binary is not available, an animated GIF (pillow) instead. Frames are produced one at a
time, so a long clip never holds more than one frame in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

DEFAULT_FPS = 4.0  # slow enough to follow one tile, fast enough to see flicker
_MACRO_BLOCK = 16  # H.264 / yuv420p want frame sides divisible by 16 (imageio would rescale otherwise)


def pad_to_multiple(frame: np.ndarray, multiple: int = _MACRO_BLOCK, value: int = 255) -> np.ndarray:
    """Pad ``[H, W, 3]`` at the bottom/right so both sides are multiples of ``multiple``."""
    height, width = frame.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not pad_h and not pad_w:
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=value)


def mp4_available() -> bool:
    """True when imageio can write MP4 (imageio-ffmpeg and its binary are present)."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def write_grid_video(folder: Path, frames: Iterable[np.ndarray], fps: float = DEFAULT_FPS,
                     allow_mp4: bool = True) -> Path:
    """Write ``folder/depth.mp4`` (or ``depth.gif``) from RGB uint8 frames; return its path."""
    import imageio.v2 as imageio

    if allow_mp4 and mp4_available():
        path = Path(folder) / "depth.mp4"
        # quality 7 of 10 keeps the colour maps readable at ~1/10 the size of a GIF.
        with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                                pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                                output_params=["-preset", "veryfast"]) as writer:
            for frame in frames:
                writer.append_data(pad_to_multiple(frame))
        return path
    path = Path(folder) / "depth.gif"
    with imageio.get_writer(path, format="GIF", mode="I", duration=1000.0 / fps, loop=0) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def lazy_frames(count: int, make_frame: Callable[[int], np.ndarray]) -> Iterable[np.ndarray]:
    """``make_frame(0) ... make_frame(count - 1)``, produced on demand."""
    return (make_frame(k) for k in range(count))
