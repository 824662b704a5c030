"""Bring frames to the network size, and map intrinsics and per-pixel maps back to the originals.

Pixel convention (as in ``ImageTransform``): continuous image coordinates with pixel edges on integers,
so the centre of pixel (row i, column j) is ``(x, y) = (j + 0.5, i + 0.5)`` and an image of width W
spans ``[0, W]``. Intrinsics K use the same coordinates in this project (VGGT-style networks predict
the principal point at ``(W/2, H/2)``, the image centre in this convention). A K calibrated with
OpenCV's integer-centre convention differs by half a pixel: add 0.5 to its cx, cy first.

Resizing is done by ``cv2.resize`` (which maps edges to edges: ``x' = x * new_w / w`` exactly in this
convention) followed by an integer crop or pad, so the transform is exactly
``network_xy = original_xy * scale + offset`` with a per-axis scale ``(new_w / w, new_h / h)``.

- ``crop``: scale to cover the network size, then centre-crop (no padding, some border lost);
- ``pad``: scale to fit inside, then centre with white (1.0) padding, as VGGT's pad mode does.

All cameras share one network size (chosen from camera 0's aspect ratio); each camera has its own
transform when resolutions differ.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from page4d_cli.pipeline.options import DEFAULT_MODE, NETWORK_WIDTH, PATCH, check_mode, check_network_width
from page4d_cli.pipeline.types import ImageTransform

PAD_VALUE = 1.0  # white, as VGGT's pad mode


def network_size_for(original_size: tuple[int, int], width: int = NETWORK_WIDTH) -> tuple[int, int]:
    """(W, H) fed to the network: ``W = width``, H the multiple of 14 nearest ``W * h / w``.

    ``width`` is checked by ``options.check_network_width`` (the ``--size`` rule; already true for a
    ``ReadOptions.size`` or a ``SampleSpec.size``, re-checked here for direct library calls)."""
    check_network_width(width)
    w, h = original_size
    height = max(PATCH, int(math.floor(width * h / w / PATCH + 0.5)) * PATCH)
    return int(width), height


def make_transform(original_size: tuple[int, int], network_size: tuple[int, int], mode: str = DEFAULT_MODE,
                   ) -> ImageTransform:
    """The crop or pad transform taking a (w, h) frame to the (W, H) network size (``mode``: the ``--mode``
    rule of ``options.check_mode``, already true for a ``ReadOptions.mode``)."""
    check_mode(mode)
    w, h = original_size
    W, H = network_size
    if mode == "crop":
        factor = max(W / w, H / h)
        new_w, new_h = max(W, round(w * factor)), max(H, round(h * factor))
        # Negative offsets: the part of the scaled image left of / above the crop window.
        ox, oy = -((new_w - W) // 2), -((new_h - H) // 2)
        box = (0, 0, W, H)
    else:
        factor = min(W / w, H / h)
        new_w, new_h = max(1, min(W, round(w * factor))), max(1, min(H, round(h * factor)))
        ox, oy = (W - new_w) // 2, (H - new_h) // 2
        box = (ox, oy, ox + new_w, oy + new_h)
    return ImageTransform(original_size=(int(w), int(h)), network_size=(int(W), int(H)),
                          scale=(new_w / w, new_h / h), offset=(float(ox), float(oy)), mode=mode,
                          valid_box=tuple(int(v) for v in box))


def _scaled_size(tf: ImageTransform) -> tuple[int, int]:
    return (round(tf.original_size[0] * tf.scale[0]), round(tf.original_size[1] * tf.scale[1]))


def resize_image(image: np.ndarray, tf: ImageTransform) -> np.ndarray:
    """uint8 ``[h, w, 3]`` (any channel order; kept) -> float32 ``[3, H, W]`` in [0, 1].

    Area averaging when shrinking (no aliasing), bicubic when enlarging. Pad mode fills with white.
    """
    new_w, new_h = _scaled_size(tf)
    shrinking = new_w * new_h < tf.original_size[0] * tf.original_size[1]
    scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    W, H = tf.network_size
    out = np.full((H, W, image.shape[2]), PAD_VALUE, dtype=np.float32)
    ox, oy = int(tf.offset[0]), int(tf.offset[1])
    x0, y0, x1, y1 = tf.valid_box
    out[y0:y1, x0:x1] = scaled[y0 - oy:y1 - oy, x0 - ox:x1 - ox].astype(np.float32) / 255.0
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def _network_to_original_index(tf: ImageTransform, axis: int) -> np.ndarray:
    """For each network pixel along ``axis`` (0 = x, 1 = y): the original pixel whose area holds its
    centre, or -1 outside the valid box."""
    count = tf.network_size[axis]
    centres = np.arange(count) + 0.5
    source = np.floor((centres - tf.offset[axis]) / tf.scale[axis]).astype(np.int64)
    lo, hi = tf.valid_box[axis], tf.valid_box[axis + 2]
    inside = (np.arange(count) >= lo) & (np.arange(count) < hi)
    source = np.clip(source, 0, tf.original_size[axis] - 1)
    return np.where(inside, source, -1)


def resize_mask(mask: np.ndarray, tf: ImageTransform) -> np.ndarray:
    """Binary map ``[h, w]`` (non-zero = 1) -> float32 ``[H, W]`` in {0, 1}, nearest; 0 in padding."""
    return resize_map_nearest(np.asarray(mask) != 0, tf, fill=False).astype(np.float32)


def resize_map_nearest(values: np.ndarray, tf: ImageTransform, fill=0) -> np.ndarray:
    """Map ``[h, w(, C)]`` (depth, labels) -> ``[H, W(, C)]``, nearest, same dtype; ``fill`` in padding.

    Each network pixel takes the original pixel holding its centre (never a blend: depth edges stay sharp).
    """
    cols = _network_to_original_index(tf, 0)
    rows = _network_to_original_index(tf, 1)
    values = np.asarray(values)
    picked = values[np.clip(rows, 0, None)[:, None], np.clip(cols, 0, None)[None, :]]
    inside = (rows >= 0)[:, None] & (cols >= 0)[None, :]
    picked[~inside] = fill
    return picked


def transform_matrix(tf: ImageTransform) -> np.ndarray:
    """3 x 3 ``A`` with ``[x', y', 1] = A @ [x, y, 1]`` (original -> network pixels)."""
    return np.array([[tf.scale[0], 0.0, tf.offset[0]], [0.0, tf.scale[1], tf.offset[1]], [0.0, 0.0, 1.0]])


def intrinsics_to_network(K_original: np.ndarray, tf: ImageTransform) -> np.ndarray:
    """``[..., 3, 3]`` K in original pixels -> K in network pixels (``A @ K``); exact, no rounding."""
    return transform_matrix(tf) @ np.asarray(K_original, dtype=np.float64)


def intrinsics_to_original(K_network: np.ndarray, tf: ImageTransform) -> np.ndarray:
    """``[..., 3, 3]`` K in network pixels -> K in the camera's original pixels (``A^-1 @ K``)."""
    return np.linalg.inv(transform_matrix(tf)) @ np.asarray(K_network, dtype=np.float64)


def network_map_to_original(map_hw: np.ndarray, tf: ImageTransform, fill: Optional[float] = None) -> np.ndarray:
    """Resample a network-resolution map ``[H, W]`` or ``[H, W, C]`` to the original ``[h, w(, C)]``.

    Nearest neighbour: each original pixel takes the network pixel holding its centre, so depth is never
    blended across object edges (no "flying" points between foreground and background) and masks stay
    binary. Original pixels whose centre falls outside the valid box (cropped away in crop mode) get
    ``fill``: NaN by default for float maps, 0 for integer/bool maps (pass ``fill=0`` for "invalid").
    Output dtype: the input's (widened only when ``fill`` does not fit it, e.g. NaN into an integer map).
    Values are not rescaled (z-depth does not depend on resolution).

    This is the one implementation of the network -> original mapping: the exporters, the training
    evaluation and ``page4d eval`` (through the written maps) all see the same pixels.
    """
    values = np.asarray(map_hw)
    if values.shape[:2] != (tf.network_size[1], tf.network_size[0]):
        raise ValueError(f"map is {values.shape[:2]} but the network size (H, W) is "
                         f"{(tf.network_size[1], tf.network_size[0])}")
    floating = np.issubdtype(values.dtype, np.floating)
    fill_value = (np.nan if floating else 0) if fill is None else fill
    (x_pos, x_in), (y_pos, y_in) = _original_centres_in_network(tf, 0), _original_centres_in_network(tf, 1)
    near_x = np.clip(np.floor(x_pos).astype(np.int64), tf.valid_box[0], tf.valid_box[2] - 1)
    near_y = np.clip(np.floor(y_pos).astype(np.int64), tf.valid_box[1], tf.valid_box[3] - 1)
    out = values[near_y[:, None], near_x[None, :]]  # fancy indexing: a new array
    outside = ~(y_in[:, None] & x_in[None, :])
    if outside.any():
        if not np.issubdtype(out.dtype, np.floating) and not float(fill_value).is_integer():
            # A fill an integer/bool map cannot hold (NaN) widens the output instead of failing.
            out = out.astype(np.result_type(out.dtype, fill_value))
        out[outside] = fill_value
    return out


def _original_centres_in_network(tf: ImageTransform, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Network coordinate of every original pixel centre along ``axis``, and whether it is inside."""
    centres = (np.arange(tf.original_size[axis]) + 0.5) * tf.scale[axis] + tf.offset[axis]
    inside = (centres >= tf.valid_box[axis]) & (centres < tf.valid_box[axis + 2])
    return centres, inside


