"""Writers for ``page4d reconstruct``: per-instant point clouds, per-camera maps, trajectories.

Output layout (``t`` = sampled instant, 0-based; ``XX`` = camera index in ``ClipBatch.cameras``
order, two digits; the camera's own name is recorded in ``cameras.json``)::

    points/frame_TTTT.ply           all cameras of instant t fused in the world frame, RGB, binary PLY
    depth/camXX/frame_TTTT.png      z-depth at the camera's ORIGINAL resolution (or .npy / .exr)
    confidence/camXX/frame_TTTT.png depth confidence, same layout (optional)
    masks/camXX/frame_TTTT.png      dynamic mask, uint8 (optional, when the network predicts one)
    trajectory/camXX.txt            TUM: timestamp tx ty tz qx qy qz qw (camera-to-world)
    cameras.json                    see ``records.py``

Quantised maps (16-bit PNG): ``value = round(x / scale)`` with ONE scale for the whole clip, chosen
so the largest value fits 65535; 0 means invalid (no depth, or a part of the original frame the
network never saw). Read back as ``x = png * scale``; error <= scale / 2.

Every writer takes the output folder it writes into (normally the temporary folder of
``output_dir.atomic_output_dir``) and returns what ``cameras.json`` needs to record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

# OpenCV reads this flag when it first needs the EXR codec; it must be in the environment before
# that, and setting it before the import is the reliable way.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402

from models.errors import Page4DError  # noqa: E402
from page4d_cli.pipeline import geometry, preprocess  # noqa: E402
from page4d_cli.pipeline.options import (  # noqa: E402
    DEFAULT_CONF_PERCENTILE,
    DEFAULT_DEPTH_FORMAT,
    DEFAULT_EDGE_REL_THRESHOLD,
    DEFAULT_POINTS_FROM,
    check_point_filter,
)
from page4d_cli.pipeline.types import ClipBatch, Prediction  # noqa: E402

PNG16_MAX = 65535
Tick = Optional[Callable[[int], None]]  # tick(n): n more files written (progress)
# Percentiles over more values than this use an even stride subsample (same answer to ~1e-4).
_PERCENTILE_SAMPLE = 4_000_000


class ExportError(Page4DError):
    """An export option cannot be honoured; the one-line message says how to fix it."""


def camera_dir(camera_index: int) -> str:
    """Folder name of a camera in the output: ``cam00``, ``cam01``, ..."""
    return f"cam{camera_index:02d}"


def frame_name(instant: int, extension: str) -> str:
    """File name of instant ``t``: ``frame_0000.png`` ..."""
    return f"frame_{instant:04d}.{extension}"


def check_shapes(pred: Prediction, batch: ClipBatch) -> tuple[int, int, int, int]:
    """Check that the prediction and the clip describe the same (T, V, H, W); return it."""
    num_t, num_v, _, height, width = batch.images.shape
    expected = (num_t, num_v, height, width)
    if pred.depth.shape != expected or pred.extrinsic.shape[:2] != (num_t, num_v):
        raise ValueError(f"prediction depth {pred.depth.shape} does not match clip images (T, V, H, W) = {expected}")
    if len(batch.transforms) != num_v or len(batch.cameras) != num_v:
        raise ValueError(f"clip has {num_v} image columns but {len(batch.cameras)} cameras / "
                         f"{len(batch.transforms)} transforms")
    return expected


# ----------------------------------------------------------------------------- point clouds


@dataclass
class PointFilter:
    """Which predicted pixels become points.

    conf_threshold (absolute) wins over conf_percentile (drop the lowest X % of confidences,
    computed ONCE over every content pixel of the whole clip, so frames stay comparable).
    edge_rel_threshold: drop depth discontinuities (``geometry.depth_edges``); None keeps them.
    voxel: voxel size in world units for downsampling (None = keep every point).
    points_from: "depth" (depth + cameras, VGGT's default) or "head" (Prediction.world_points).
    """

    conf_percentile: Optional[float] = DEFAULT_CONF_PERCENTILE
    conf_threshold: Optional[float] = None
    edge_rel_threshold: Optional[float] = DEFAULT_EDGE_REL_THRESHOLD
    voxel: Optional[float] = None
    points_from: str = DEFAULT_POINTS_FROM

    def __post_init__(self) -> None:
        check_point_filter(self.conf_percentile, self.conf_threshold, self.voxel, self.points_from)


def point_confidence(pred: Prediction, points_from: str) -> np.ndarray:
    """The confidence ``[T, V, H, W]`` that goes with the chosen point source."""
    if points_from == "depth":
        return pred.depth_conf
    if points_from == "head":
        if pred.world_points is None or pred.world_points_conf is None:
            raise ExportError("points_from='head' needs the point head's output, which this prediction lacks; "
                              "use points_from='depth'")
        return pred.world_points_conf
    raise AssertionError(f"points_from {points_from!r}: PointFilter checks it")


def resolve_conf_threshold(pred: Prediction, batch: ClipBatch, point_filter: PointFilter) -> float:
    """Absolute minimum confidence kept (``conf >= value``); -inf when nothing is filtered."""
    if point_filter.conf_threshold is not None:
        return float(point_filter.conf_threshold)
    percentile = point_filter.conf_percentile
    if percentile is None or percentile <= 0:
        return -np.inf
    conf = point_confidence(pred, point_filter.points_from)
    values = np.concatenate(
        [conf[:, v][:, geometry.content_mask(tr)].ravel() for v, tr in enumerate(batch.transforms)]
    )
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.inf
    stride = max(1, values.size // _PERCENTILE_SAMPLE)
    return float(np.percentile(values[::stride], percentile))


def fused_points(pred: Prediction, batch: ClipBatch, instant: int, point_filter: PointFilter,
                 min_conf: float) -> tuple[np.ndarray, np.ndarray]:
    """All cameras of one instant in the world frame: (points ``[N, 3]`` float64, colours ``[N, 3]`` in [0, 1]).

    Keeps pixels inside the content box (no padding), with valid depth, ``conf >= min_conf`` and,
    if asked, not on a depth edge. Voxel downsampling is a separate step (``voxel_downsample``).
    """
    conf = point_confidence(pred, point_filter.points_from)
    all_points, all_colors = [], []
    for v, transform in enumerate(batch.transforms):
        depth = pred.depth[instant, v]
        keep = geometry.content_mask(transform) & geometry.valid_depth(depth)
        keep &= conf[instant, v] >= min_conf
        if point_filter.edge_rel_threshold is not None:
            keep &= ~geometry.depth_edges(depth, point_filter.edge_rel_threshold)
        if point_filter.points_from == "head":
            points = pred.world_points[instant, v].astype(np.float64)
        else:
            # Pixels with unusable depth (inf from an overflowing head, NaN) unproject to non-finite points,
            # dropped by ``keep`` right below: numpy need not warn about them on the user's terminal.
            with np.errstate(invalid="ignore", over="ignore"):
                points = geometry.unproject_depth(depth, pred.intrinsic[instant, v], pred.extrinsic[instant, v])
        keep &= np.all(np.isfinite(points), axis=-1)
        all_points.append(points[keep])
        all_colors.append(np.moveaxis(batch.images[instant, v], 0, -1)[keep].astype(np.float64))
    return np.concatenate(all_points), np.clip(np.concatenate(all_colors), 0.0, 1.0)


_PLY_HEADER = (
    "ply\nformat binary_little_endian 1.0\ncomment Created by page4d\nelement vertex {count}\n"
    "property {coord} x\nproperty {coord} y\nproperty {coord} z\n"
    "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
)


def _open3d_cloud(points: np.ndarray, colors: np.ndarray):
    import open3d as o3d  # imported here: open3d is slow to import and only needed for clouds

    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(np.ascontiguousarray(points, dtype=np.float64))
    cloud.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(colors, dtype=np.float64))
    return cloud


def voxel_downsample(points: np.ndarray, colors: np.ndarray, voxel: Optional[float]) -> tuple[np.ndarray, np.ndarray]:
    """open3d voxel grid downsampling (one averaged point + colour per occupied voxel); None = no-op."""
    if voxel is None or len(points) == 0:
        return points, colors
    cloud = _open3d_cloud(points, colors).voxel_down_sample(voxel)
    return np.asarray(cloud.points), np.asarray(cloud.colors)


def ply_bytes(points: np.ndarray, colors: np.ndarray) -> bytes:
    """A binary little-endian PLY: xyz as float32 when ``points`` is float32, else float64; uchar RGB.

    points ``[N, 3]``, colors ``[N, 3]`` in [0, 1] (rounded to 0..255 as open3d does). N = 0 gives a
    valid header-only file (readers then see 0 points, not a missing file).
    """
    coord, kind = ("float", "<f4") if points.dtype == np.float32 else ("double", "<f8")
    vertex = np.empty(len(points), dtype=[("x", kind), ("y", kind), ("z", kind),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for axis, name in enumerate("xyz"):
        vertex[name] = points[:, axis]
    rgb = np.rint(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
    for axis, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, axis]
    return _PLY_HEADER.format(count=len(points), coord=coord).encode("ascii") + vertex.tobytes()


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> int:
    """Write a binary PLY (``ply_bytes``); return the number of points.

    Written with plain file I/O (not open3d, whose C writer prints one line per failed write and
    only returns False): a full disk raises ``OSError(ENOSPC)`` like every other writer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ply_bytes(np.asarray(points), np.asarray(colors)))
    return len(points)


def write_point_clouds(out_dir: Path, pred: Prediction, batch: ClipBatch,
                       point_filter: Optional[PointFilter] = None, tick: Tick = None) -> dict:
    """``points/frame_TTTT.ply`` for every instant (default filter: ``PointFilter()``).

    Returns a summary for cameras.json / run.json (threshold used, points per instant).
    """
    point_filter = PointFilter() if point_filter is None else point_filter
    check_shapes(pred, batch)
    min_conf = resolve_conf_threshold(pred, batch, point_filter)
    counts = []
    for t in range(pred.depth.shape[0]):
        points, colors = fused_points(pred, batch, t, point_filter, min_conf)
        points, colors = voxel_downsample(points, colors, point_filter.voxel)
        # float32 coordinates: 7 significant digits are far below the network's accuracy, and half the size.
        counts.append(write_ply(Path(out_dir) / "points" / frame_name(t, "ply"), points.astype(np.float32), colors))
        if tick is not None:
            tick(1)
    return {
        "pattern": "points/frame_{t:04d}.ply",
        "coordinates": "float32",
        "points_from": point_filter.points_from,
        "conf_percentile": None if point_filter.conf_threshold is not None else point_filter.conf_percentile,
        "conf_threshold": None if not np.isfinite(min_conf) else min_conf,
        "edge_rel_threshold": point_filter.edge_rel_threshold,
        "voxel": point_filter.voxel,
        "num_points": counts,
    }


# ----------------------------------------------------------------------------- per-camera maps


def quantization_scale(max_value: float) -> float:
    """The scale that maps ``max_value`` to 65535 (1.0 when there is nothing positive to store)."""
    return float(max_value) / PNG16_MAX if np.isfinite(max_value) and max_value > 0 else 1.0


def quantize_png16(values: np.ndarray, scale: float) -> np.ndarray:
    """``round(values / scale)`` as uint16; invalid (<= 0, NaN) -> 0, tiny valid values -> 1."""
    good = geometry.valid_depth(values)
    levels = np.zeros(values.shape, dtype=np.float64)
    levels[good] = np.clip(np.rint(values[good] / scale), 1, PNG16_MAX)
    return levels.astype(np.uint16)


def _max_over_content(maps: np.ndarray, batch: ClipBatch) -> float:
    """Largest finite value of ``maps [T, V, H, W]`` inside the content boxes (-inf if none)."""
    best = -np.inf
    for v, transform in enumerate(batch.transforms):
        values = maps[:, v][:, geometry.content_mask(transform)]
        values = values[np.isfinite(values)]
        if values.size:
            best = max(best, float(values.max()))
    return best


def write_map_file(path: Path, values: np.ndarray, fmt: str) -> None:
    """One map at original resolution: png (uint16/uint8 as given), npy or exr (float32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(path, values)
        return
    if fmt == "exr" and not cv2.haveImageWriter(".exr"):
        raise ExportError("this OpenCV build cannot write EXR files (OPENCV_IO_ENABLE_OPENEXR / codec missing); "
                          "use depth format 'npy' instead")
    # Encode in memory, write with Python: a full disk then raises OSError(ENOSPC) instead of a libpng
    # message on stderr and a False that is easy to miss.
    try:
        ok, encoded = cv2.imencode(f".{fmt}", values)
    except cv2.error as exc:  # e.g. EXR disabled at run time
        reason = str(exc).strip().splitlines()[-1]
        raise ExportError(f"{path}: OpenCV could not write it ({reason}); use format 'npy'") from exc
    if not ok:
        raise ExportError(f"{path}: OpenCV could not encode the {fmt} image; use format 'npy'")
    path.write_bytes(encoded.tobytes())


def _write_maps(out_dir: Path, folder: str, maps: np.ndarray, batch: ClipBatch, fmt: str, tick: Tick = None) -> dict:
    """Resample every ``maps[t, v]`` to camera v's original size and write it; return the record."""
    if fmt == "png":
        scale = quantization_scale(_max_over_content(maps, batch))
    else:
        scale = 1.0
    for v, transform in enumerate(batch.transforms):
        for t in range(maps.shape[0]):
            # Nearest: depth is never blended across object edges; cropped-away pixels get 0 = invalid.
            values = preprocess.network_map_to_original(maps[t, v], transform, fill=0.0)
            values = quantize_png16(values, scale) if fmt == "png" else np.where(
                geometry.valid_depth(values), values, 0.0).astype(np.float32)
            write_map_file(Path(out_dir) / folder / camera_dir(v) / frame_name(t, fmt), values, fmt)
            if tick is not None:
                tick(1)
    return {
        "pattern": f"{folder}/cam{{v:02d}}/frame_{{t:04d}}.{fmt}",
        "format": fmt,
        "scale": scale,
        "decode": "value * scale" if fmt == "png" else "value (float32, scale 1)",
        "invalid_value": 0,
        "resolution": "original",
    }


def write_depth_maps(out_dir: Path, pred: Prediction, batch: ClipBatch, fmt: str = DEFAULT_DEPTH_FORMAT,
                     tick: Tick = None) -> dict:
    """``depth/camXX/frame_TTTT.<fmt>``: z-depth in world units at the original resolution."""
    check_shapes(pred, batch)
    record = _write_maps(out_dir, "depth", pred.depth, batch, fmt, tick)
    record["kind"] = "z-depth along the camera's optical axis, world units"
    return record


def write_confidence_maps(out_dir: Path, pred: Prediction, batch: ClipBatch, fmt: str = DEFAULT_DEPTH_FORMAT,
                          tick: Tick = None) -> dict:
    """``confidence/camXX/frame_TTTT.<fmt>``: the depth confidence (>= 1; 0 = outside the content)."""
    check_shapes(pred, batch)
    record = _write_maps(out_dir, "confidence", pred.depth_conf, batch, fmt, tick)
    record["kind"] = "depth confidence (VGGT 1 + exp(x), higher is better)"
    return record


def write_dynamic_masks(out_dir: Path, pred: Prediction, batch: ClipBatch, mode: str = "binary",
                        tick: Tick = None) -> Optional[dict]:
    """``masks/camXX/frame_TTTT.png``, uint8 at the original resolution; None if no mask was predicted.

    mode "binary": 255 where the dynamic probability M > 0.5, else 0.
    mode "probability": round(255 * M) (8-bit probability).
    Parts of the original frame the network never saw are 0 (static) in both modes.
    """
    if pred.dynamic_mask is None:
        return None
    check_shapes(pred, batch)
    probability = np.nan_to_num(pred.dynamic_mask.astype(np.float64), nan=0.0)
    for v, transform in enumerate(batch.transforms):
        for t in range(probability.shape[0]):
            m = preprocess.network_map_to_original(probability[t, v], transform, fill=0.0)
            m = np.where(m > 0.5, 255, 0) if mode == "binary" else np.rint(np.clip(m, 0, 1) * 255)
            write_map_file(Path(out_dir) / "masks" / camera_dir(v) / frame_name(t, "png"), m.astype(np.uint8), "png")
            if tick is not None:
                tick(1)
    return {
        "pattern": "masks/cam{v:02d}/frame_{t:04d}.png",
        "mode": mode,
        "decode": "255 = dynamic (M > 0.5), 0 = static" if mode == "binary" else "M = value / 255",
        "resolution": "original",
    }


# ----------------------------------------------------------------------------- trajectories


def write_trajectories(out_dir: Path, pred: Prediction, batch: ClipBatch, tick: Tick = None) -> dict:
    """``trajectory/camXX.txt`` in TUM format, one line per instant (readable by evo).

    Each line: ``timestamp tx ty tz qx qy qz qw`` where (tx, ty, tz) is the camera centre in the
    world frame and q the camera-to-world rotation (R^T of the extrinsic); timestamp in seconds.
    """
    check_shapes(pred, batch)
    centers = geometry.camera_centers(pred.extrinsic.astype(np.float64))
    quats = geometry.rotation_to_quaternion(np.swapaxes(pred.extrinsic[..., :3, :3], -1, -2))
    folder = Path(out_dir) / "trajectory"
    folder.mkdir(parents=True, exist_ok=True)
    for v in range(pred.extrinsic.shape[1]):
        lines = ["# timestamp tx ty tz qx qy qz qw  (camera-to-world; page4d world frame)"]
        for t in range(pred.extrinsic.shape[0]):
            values = [*centers[t, v], *quats[t, v]]
            numbers = " ".join(f"{x + 0.0:.12g}" for x in values)  # + 0.0 turns -0.0 into 0
            lines.append(f"{float(batch.timestamps[t, v]):.9f} {numbers}")
        (folder / f"{camera_dir(v)}.txt").write_text("\n".join(lines) + "\n")
        if tick is not None:
            tick(1)
    return {"pattern": "trajectory/cam{v:02d}.txt", "format": "TUM: timestamp tx ty tz qx qy qz qw",
            "pose": "camera-to-world"}
