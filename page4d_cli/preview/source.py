"""What the previews draw, taken from the in-memory result of a run (no file is read back).

``PreviewClip`` hands out, per instant ``t`` and camera ``v``, the network-resolution arrays cropped
to the camera's content box (padding removed, so every column of the grid shows the same pixels):

    image(t, v)       [h, w, 3] uint8 RGB (what the network saw)
    depth(t, v)       [h, w] float32 z-depth, world units (<= 0 / NaN = invalid)
    confidence(t, v)  [h, w] float32 depth confidence (>= 1)
    mask(t, v)        [h, w] float32 dynamic probability in [0, 1], or None without a mask

Nothing is copied up front: large clips cost no extra memory beyond one tile at a time.
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

    def image(self, t: int, v: int) -> np.ndarray:
        rows, cols = self._box(v)
        rgb = np.moveaxis(self.batch.images[t, v, :, rows, cols], 0, -1)
        return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)

    def depth(self, t: int, v: int) -> np.ndarray:
        rows, cols = self._box(v)
        return self.prediction.depth[t, v, rows, cols]

    def confidence(self, t: int, v: int) -> np.ndarray:
        rows, cols = self._box(v)
        return self.prediction.depth_conf[t, v, rows, cols]

    def mask(self, t: int, v: int) -> Optional[np.ndarray]:
        if self.prediction.dynamic_mask is None:
            return None
        rows, cols = self._box(v)
        return self.prediction.dynamic_mask[t, v, rows, cols]

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
