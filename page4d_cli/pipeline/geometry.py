"""Small, pure geometry helpers used by the exporters and the window alignment.

Conventions (see ``types.py``):

- ``extrinsic`` E is camera-from-world, 4 x 4: ``X_cam = E @ [X_world, 1]``; OpenCV axes.
- Pixel coordinates are continuous with the *pixel-centre* convention: the centre of pixel
  (row i, column j) is (x, y) = (j + 0.5, i + 0.5). This is the convention of ``ImageTransform``
  and of COLMAP. (OpenCV puts the centre at (j, i): subtract 0.5 from cx, cy to convert.)
- K projects camera points to those coordinates: ``[x, y, 1] ~ K @ X_cam``.
- Depth is z-depth (the camera-frame Z of the surface point), not distance along the ray.
- Quaternions are (x, y, z, w), unit norm, with w >= 0 (q and -q are the same rotation; we pick one
  so outputs are deterministic).
"""

from __future__ import annotations

import numpy as np

from page4d_cli.pipeline.options import DEFAULT_EDGE_REL_THRESHOLD
from page4d_cli.pipeline.types import ImageTransform

# Where the centre of pixel 0 lies in continuous pixel coordinates (pixel-centre convention).
PIXEL_CENTER = 0.5


# ----------------------------------------------------------------------------- rigid transforms


def invert_rigid(transform: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4 x 4 transforms ``[..., 4, 4]`` (closed form, no general matrix inverse)."""
    rotation = transform[..., :3, :3]
    translation = transform[..., :3, 3]
    inverse = np.zeros_like(transform)
    rotation_t = np.swapaxes(rotation, -1, -2)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -np.einsum("...ij,...j->...i", rotation_t, translation)
    inverse[..., 3, 3] = 1.0
    return inverse


def camera_centers(extrinsic: np.ndarray) -> np.ndarray:
    """World position of each camera: C = -R^T t.  ``[..., 4, 4]`` (or 3 x 4) -> ``[..., 3]``."""
    rotation = extrinsic[..., :3, :3]
    translation = extrinsic[..., :3, 3]
    return -np.einsum("...ji,...j->...i", rotation, translation)


# ----------------------------------------------------------------------------- quaternions


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` as (x, y, z, w), w >= 0.

    Shepperd's method: build the quaternion from whichever of (w, x, y, z) has the largest
    magnitude, so we never divide by a small number (robust near 180 degree rotations).
    Slightly non-orthonormal input is tolerated; the result is normalised.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    batch_shape = rotation.shape[:-2]
    m = rotation.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # 4*w^2, 4*x^2, 4*y^2, 4*z^2 up to a common term; pick the largest per matrix.
    candidates = np.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=1
    )
    which = np.argmax(candidates, axis=1)
    quat = np.empty((m.shape[0], 4))  # (x, y, z, w)
    for case in range(4):
        sel = which == case
        if not np.any(sel):
            continue
        r = m[sel]
        root = np.sqrt(np.maximum(candidates[sel, case], 1e-300)) * 2.0  # = 4 * |component|
        if case == 0:  # w largest
            q = [(r[:, 2, 1] - r[:, 1, 2]) / root, (r[:, 0, 2] - r[:, 2, 0]) / root,
                 (r[:, 1, 0] - r[:, 0, 1]) / root, 0.25 * root]
        elif case == 1:  # x largest
            q = [0.25 * root, (r[:, 0, 1] + r[:, 1, 0]) / root,
                 (r[:, 0, 2] + r[:, 2, 0]) / root, (r[:, 2, 1] - r[:, 1, 2]) / root]
        elif case == 2:  # y largest
            q = [(r[:, 0, 1] + r[:, 1, 0]) / root, 0.25 * root,
                 (r[:, 1, 2] + r[:, 2, 1]) / root, (r[:, 0, 2] - r[:, 2, 0]) / root]
        else:  # z largest
            q = [(r[:, 0, 2] + r[:, 2, 0]) / root, (r[:, 1, 2] + r[:, 2, 1]) / root,
                 0.25 * root, (r[:, 1, 0] - r[:, 0, 1]) / root]
        quat[sel] = np.stack(q, axis=1)
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    quat[quat[:, 3] < 0] *= -1.0  # canonical sign
    return quat.reshape(*batch_shape, 4)


def quaternion_to_rotation(quat: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` as (x, y, z, w) (normalised here) -> rotation matrices ``[..., 3, 3]``."""
    quat = np.asarray(quat, dtype=np.float64)
    norm = np.linalg.norm(quat, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("quaternion_to_rotation: zero-length quaternion")
    x, y, z, w = np.moveaxis(quat / norm, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


# ----------------------------------------------------------------------------- unprojection


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (x, y) of every pixel centre, each ``[H, W]`` (pixel-centre convention)."""
    xs = np.arange(width, dtype=np.float64) + PIXEL_CENTER
    ys = np.arange(height, dtype=np.float64) + PIXEL_CENTER
    return np.meshgrid(xs, ys)


def depth_to_camera_points(depth: np.ndarray, intrinsic: np.ndarray) -> np.ndarray:
    """z-depth ``[H, W]`` + K ``[3, 3]`` -> camera-frame points ``[H, W, 3]`` (float64).

    X_cam = depth * K^-1 [x, y, 1]; the z component equals the depth exactly.
    """
    height, width = depth.shape
    x, y = pixel_grid(height, width)
    fx, fy, cx, cy, skew = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2], intrinsic[0, 1]
    z = depth.astype(np.float64)
    y_norm = (y - cy) / fy
    x_norm = (x - cx - skew * y_norm) / fx
    return np.stack([x_norm * z, y_norm * z, z], axis=-1)


def unproject_depth(depth: np.ndarray, intrinsic: np.ndarray, extrinsic: np.ndarray) -> np.ndarray:
    """z-depth ``[H, W]`` + K ``[3, 3]`` + camera-from-world ``[4, 4]`` -> world points ``[H, W, 3]``.

    X_world = R^T (X_cam - t). Invalid depths (<= 0, NaN) give points that callers must mask out.
    """
    points_cam = depth_to_camera_points(depth, intrinsic)
    rotation = extrinsic[:3, :3].astype(np.float64)
    translation = extrinsic[:3, 3].astype(np.float64)
    return (points_cam - translation) @ rotation  # row-vector form of R^T (X - t)


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """Boolean mask of usable depth values (finite and > 0)."""
    return np.isfinite(depth) & (depth > 0)


def depth_edges(depth: np.ndarray, rel_threshold: float = DEFAULT_EDGE_REL_THRESHOLD) -> np.ndarray:
    """Flag depth discontinuities: ``[H, W]`` -> bool ``[H, W]`` (True = edge, drop the point).

    A pixel is an edge when any of its 8 neighbours differs from it by more than
    ``rel_threshold * depth(pixel)``. Unprojected points at such pixels are the "flying pixels"
    smeared between foreground and background, so exporters remove them. Invalid pixels and
    pixels next to invalid ones are flagged too. Image borders compare only with existing
    neighbours.
    """
    if rel_threshold <= 0:
        raise ValueError(f"depth_edges: rel_threshold must be > 0, got {rel_threshold}")
    good = valid_depth(depth)
    filled = np.where(good, depth, np.nan).astype(np.float64)
    padded = np.pad(filled, 1, mode="edge")  # edge padding: a border pixel compares with itself
    height, width = depth.shape
    max_diff = np.zeros((height, width))
    any_invalid = ~good
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            neighbour = padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
            any_invalid |= np.isnan(neighbour)
            max_diff = np.fmax(max_diff, np.abs(neighbour - filled))
    return any_invalid | (max_diff > rel_threshold * np.where(good, depth, 0.0))


# ----------------------------------------------------------------------------- network <-> original
# (K and maps are mapped back by ``preprocess.intrinsics_to_original`` / ``network_map_to_original``.)


def content_mask(transform: ImageTransform) -> np.ndarray:
    """Bool ``[H_net, W_net]``: network pixels holding image content (False on padding)."""
    width, height = transform.network_size
    x0, y0, x1, y1 = transform.valid_box
    mask = np.zeros((height, width), dtype=bool)
    mask[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)] = True
    return mask
