"""Stream the needed frames of one camera, in order, without holding the rest of the video.

Videos are read sequentially: frames before a needed one are skipped with ``grab()`` (the codec still
has to decode them, but no colour conversion or copy is made) and only needed frames are
``retrieve()``-d. Memory is therefore one frame, whatever the video length. Image folders open only
the files of the needed frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional

import cv2
import numpy as np

from page4d_cli.pipeline.errors import InputError, display_path
from page4d_cli.pipeline.sources import list_image_files, read_image_file, reencode_advice
from page4d_cli.pipeline.types import ClipBatch


def iter_video_frames(path: Path, indices: Iterable[int], expected_size: Optional[tuple[int, int]] = None,
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for each distinct index in increasing order.

    ``frame`` is BGR uint8 ``[H, W, 3]`` as OpenCV decodes it. ``expected_size`` is (width, height);
    a frame of another size raises ``InputError``. A frame that cannot be decoded raises ``InputError``
    naming the file and the index.
    """
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{display_path(path)}: cannot open the video; {reencode_advice(path)}")
    try:
        position = 0  # index of the frame the next grab() returns
        for index in wanted:
            while position <= index:
                if not capture.grab():
                    raise InputError(
                        f"{display_path(path)}: frame {position} cannot be decoded (file truncated or "
                        f"corrupt); {reencode_advice(path)}")
                position += 1
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                raise InputError(f"{display_path(path)}: frame {index} cannot be decoded; {reencode_advice(path)}")
            _check_size(frame, expected_size, f"{display_path(path)} frame {index}")
            yield index, frame
    finally:
        capture.release()


def iter_image_frames(folder: Path, indices: Iterable[int], expected_size: Optional[tuple[int, int]] = None,
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """Like ``iter_video_frames`` for a folder of images (k-th file in natural order = frame k)."""
    files = list_image_files(folder)
    for index in sorted({int(i) for i in indices}):
        if not 0 <= index < len(files):
            raise InputError(f"{display_path(folder)}: frame {index} requested but the folder holds "
                             f"{len(files)} images; add the missing frames")
        frame = read_image_file(files[index])
        _check_size(frame, expected_size, display_path(files[index]))
        yield index, frame


def iter_frames(path: Path, kind: str, indices: Iterable[int],
                expected_size: Optional[tuple[int, int]] = None) -> Iterator[tuple[int, np.ndarray]]:
    """Dispatch on ``kind`` ("video" or "images"); yields BGR uint8 frames, increasing index."""
    if kind == "video":
        return iter_video_frames(Path(path), indices, expected_size)
    if kind == "images":
        return iter_image_frames(Path(path), indices, expected_size)
    raise ValueError(f"unknown source kind {kind!r}")


def _check_size(frame: np.ndarray, expected_size: Optional[tuple[int, int]], where: str) -> None:
    if expected_size is None:
        return
    size = (int(frame.shape[1]), int(frame.shape[0]))
    if size != tuple(expected_size):
        raise InputError(f"{where}: is {size[0]}x{size[1]} but the camera's first frame is "
                         f"{expected_size[0]}x{expected_size[1]}; every frame of a camera must have the "
                         f"same size")


def instant_frames(batch: ClipBatch, instant: int) -> list[np.ndarray]:
    """The original RGB frames of one sampled instant, one per camera (e.g. the COLMAP model's images)."""
    frames = []
    for v, camera in enumerate(batch.cameras):
        index = int(batch.frame_indices[instant, v])
        for _, frame_bgr in iter_frames(camera.path, camera.kind, [index], camera.size):
            frames.append(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    return frames
