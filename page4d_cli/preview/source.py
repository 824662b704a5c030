"""What the previews draw, taken from the in-memory result of a run (no file is read back).

``PreviewClip.tiles(t, v, width, height)`` samples, for instant ``t`` and camera ``v``, the network-
resolution arrays inside the camera's content box (padding left out, so every column of the grid shows
the same pixels) at the tile size:

    image       [height, width, 3] uint8 RGB (what the network saw; 2 x 2 samples averaged per pixel)
    depth       [height, width] float32 z-depth, world units (<= 0 / NaN = invalid), nearest sample
    confidence  [height, width] float32 depth confidence (>= 1), nearest sample
    mask        [height, width] float32 dynamic probability in [0, 1] (None without a mask)

Nothing is copied up front: a long clip costs one tile at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from page4d_cli.pipeline.export import camera_dir, check_shapes
from page4d_cli.pipeline.types import ClipBatch, Prediction
from page4d_cli.preview.colors import ValueRange, log_confidence, robust_range

# At most this many values per camera feed the clip-wide colour ranges (an even stride over time).
_RANGE_SAMPLES_PER_CAMERA = 250_000


@dataclass
class PreviewClip:
    """A run's prediction and input, seen through each camera's content box."""

    prediction: Prediction
    batch: ClipBatch

    def __post_init__(self) -> None:
        self.num_instants, self.num_cameras, _, _ = check_shapes(self.prediction, self.batch)

    # ----------------------------------------------------------------- per tile

    def _box(self, v: int) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.batch.transforms[v].valid_box
        height, width = self.batch.images.shape[-2:]
        return slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width))

    def content_size(self, v: int) -> tuple[int, int]:
        """(width, height) of camera v's content box in network pixels."""
        rows, cols = self._box(v)
        return cols.stop - cols.start, rows.stop - rows.start

    # ----------------------------------------------------------------- tiles (sampled, not resized)

    def _tile_index(self, v: int, width: int, height: int, phase: float) -> tuple[np.ndarray, np.ndarray]:
        """Network row/column of each tile pixel: the content pixel under tile position (j + phase) * step."""
        rows, cols = self._box(v)
        content_h, content_w = rows.stop - rows.start, cols.stop - cols.start
        r = rows.start + np.minimum(((np.arange(height) + phase) * content_h / height).astype(np.int64), content_h - 1)
        c = cols.start + np.minimum(((np.arange(width) + phase) * content_w / width).astype(np.int64), content_w - 1)
        return r[:, None], c[None, :]

    def image_tile(self, t: int, v: int, width: int, height: int) -> np.ndarray:
        """``[height, width, 3]`` uint8: the input, each tile pixel the mean of 2 x 2 samples (no aliasing
        of fine textures, at a fraction of the cost of resizing the whole frame)."""
        total = np.zeros((3, height, width), np.float32)
        for phase_r in (0.25, 0.75):
            r, _ = self._tile_index(v, width, height, phase_r)
            for phase_c in (0.25, 0.75):
                _, c = self._tile_index(v, width, height, phase_c)
                total += self.batch.images[t, v][:, r, c]
        return np.clip(np.rint(np.moveaxis(total, 0, -1) * (255.0 / 4)), 0, 255).astype(np.uint8)

    def map_tile(self, maps: np.ndarray, t: int, v: int, width: int, height: int) -> np.ndarray:
        """``[height, width]`` nearest samples (tile pixel centres) of ``maps[t, v]``: one predicted value
        per tile pixel, never a blend of two depths."""
        r, c = self._tile_index(v, width, height, 0.5)
        return maps[t, v][r, c]

    def tiles(self, t: int, v: int, width: int, height: int) -> dict[str, Optional[np.ndarray]]:
        """image (uint8 RGB), depth, confidence and mask (None without one) tiles of camera v at instant t."""
        pred = self.prediction
        return {
            "image": self.image_tile(t, v, width, height),
            "depth": self.map_tile(pred.depth, t, v, width, height),
            "confidence": self.map_tile(pred.depth_conf, t, v, width, height),
            "mask": None if pred.dynamic_mask is None else self.map_tile(pred.dynamic_mask, t, v, width, height),
        }

    @property
    def has_mask(self) -> bool:
        return self.prediction.dynamic_mask is not None

    # ----------------------------------------------------------------- whole clip

    def camera_label(self, v: int) -> str:
        """``cam00`` plus the camera's own name when it differs."""
        name = self.batch.cameras[v].name
        folder = camera_dir(v)
        return folder if name == folder else f"{folder} {name}"

    def timestamp(self, t: int) -> float:
        """Seconds of instant t (camera 0's sample, the reference)."""
        return float(self.batch.timestamps[t, 0])

    def _sample(self, maps: np.ndarray) -> np.ndarray:
        """Content values of ``maps [T, V, H, W]``, strided over time to bound the work."""
        parts = []
        for v in range(self.num_cameras):
            rows, cols = self._box(v)
            per_instant = (rows.stop - rows.start) * (cols.stop - cols.start)
            step = max(1, int(np.ceil(self.num_instants * per_instant / _RANGE_SAMPLES_PER_CAMERA)))
            parts.append(maps[::step, v, rows, cols].ravel())
        return np.concatenate(parts)

    def depth_range(self) -> ValueRange:
        """The clip-wide depth colour range (robust percentiles of every camera's valid depth)."""
        return robust_range(self._sample(self.prediction.depth))

    def confidence_range(self) -> ValueRange:
        """The clip-wide range of log(confidence)."""
        return robust_range(log_confidence(self._sample(self.prediction.depth_conf)))
