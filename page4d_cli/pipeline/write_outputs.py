"""One call that writes a whole reconstruction folder (what ``page4d reconstruct`` does at the end).

    with atomic_output_dir(out, overwrite) as tmp:
        summary = export_reconstruction(tmp, prediction, batch, ExportOptions(...))
        write_run_json(tmp, {..., "export": summary})

The individual writers (``export``, ``export_colmap``, ``records``) stay callable on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from page4d_cli.pipeline import export
from page4d_cli.pipeline.errors import InputError
from page4d_cli.pipeline.export_colmap import MODEL_FILES, write_colmap_model
from page4d_cli.pipeline.options import (
    DEFAULT_COLMAP_FORMAT,
    DEFAULT_COLMAP_MAX_POINTS,
    DEFAULT_DEPTH_FORMAT,
    MASK_MODES,
    check_colmap,
    check_map_format,
)
from page4d_cli.pipeline.records import build_cameras_json, write_cameras_json
from page4d_cli.pipeline.types import ClipBatch, Prediction


@dataclass
class ExportOptions:
    """What to write. ``None`` for a format/mode means "do not write that kind of file"."""

    point_filter: export.PointFilter = field(default_factory=export.PointFilter)
    write_points: bool = True
    depth_format: Optional[str] = DEFAULT_DEPTH_FORMAT  # "png" | "npy" | "exr" | None
    confidence_format: Optional[str] = None  # "png" | "npy" | "exr" | None
    mask_mode: Optional[str] = "binary"  # "binary" | "probability" | None (skipped anyway without a mask)
    write_trajectories: bool = True
    colmap_instant: Optional[int] = None  # instant for the COLMAP model; None = no COLMAP output
    colmap_max_points: int = DEFAULT_COLMAP_MAX_POINTS  # even random subsample above this; 0 = every point
    colmap_format: str = DEFAULT_COLMAP_FORMAT  # "text" | "bin"

    def __post_init__(self) -> None:
        """The export group's checks, once (the writers trust them); ``InputError`` names the option."""
        check_map_format(self.depth_format, "--depth-format")
        check_map_format(self.confidence_format, "--depth-format (of the confidence maps)")
        if self.mask_mode is not None and self.mask_mode not in MASK_MODES:
            raise InputError(f"mask mode {self.mask_mode}: use one of {', '.join(MASK_MODES)}")
        if "exr" in (self.depth_format, self.confidence_format) and not cv2.haveImageWriter(".exr"):
            raise InputError("--depth-format exr: this OpenCV build cannot write EXR files; use --depth-format npy "
                             "(float32) or png (16-bit)")
        if self.colmap_instant is not None and self.colmap_instant < 0:
            raise InputError(f"--colmap-frame {self.colmap_instant}: must be 0 or more (a sampled instant)")
        check_colmap(self.colmap_format, self.colmap_max_points)


Progress = Optional[Callable[[int, int], None]]  # progress(files written, files to write), like read_clip's


def planned_file_count(pred: Prediction, batch: ClipBatch, options: ExportOptions) -> int:
    """How many files ``export_reconstruction`` writes with these options (the progress total)."""
    num_t, num_v = batch.frame_indices.shape
    count = 1  # cameras.json
    count += num_t if options.write_points else 0
    count += num_t * num_v if options.depth_format else 0
    count += num_t * num_v if options.confidence_format else 0
    count += num_t * num_v if options.mask_mode and pred.dynamic_mask is not None else 0
    count += num_v if options.write_trajectories else 0
    count += num_v + MODEL_FILES if options.colmap_instant is not None else 0
    return count


def export_reconstruction(out_dir: Path, pred: Prediction, batch: ClipBatch,
                          options: Optional[ExportOptions] = None,
                          colmap_frames: Optional[Sequence[np.ndarray]] = None, progress: Progress = None) -> dict:
    """Write every requested output into ``out_dir`` and ``cameras.json`` last; return a summary.

    options: what to write (default ``ExportOptions()``: PLYs, depth PNGs, masks, trajectories).

    colmap_frames: original RGB uint8 frames of ``options.colmap_instant`` (one per camera) so the
    COLMAP model is at the original resolution; without them it uses the network images.

    progress: ``progress(done, total)`` after every file, ``total = planned_file_count(...)``.
    """
    options = ExportOptions() if options is None else options
    out_dir = Path(out_dir)
    export.check_shapes(pred, batch)
    total = planned_file_count(pred, batch, options)
    done = 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    files: dict[str, Optional[dict]] = {}
    depth_record = None
    if options.write_points:
        files["points"] = export.write_point_clouds(out_dir, pred, batch, options.point_filter, tick)
    if options.depth_format is not None:
        depth_record = export.write_depth_maps(out_dir, pred, batch, options.depth_format, tick)
        files["depth"] = depth_record
    if options.confidence_format is not None:
        files["confidence"] = export.write_confidence_maps(out_dir, pred, batch, options.confidence_format, tick)
    if options.mask_mode is not None:
        files["masks"] = export.write_dynamic_masks(out_dir, pred, batch, options.mask_mode, tick)
    if options.write_trajectories:
        files["trajectory"] = export.write_trajectories(out_dir, pred, batch, tick)
    if options.colmap_instant is not None:
        files["colmap"] = _write_colmap(out_dir, pred, batch, options, colmap_frames, tick)
    cameras = build_cameras_json(pred, batch, files, depth=depth_record)
    write_cameras_json(out_dir, cameras)
    tick(1)
    return {kind: record for kind, record in files.items() if record is not None}


def _write_colmap(out_dir: Path, pred: Prediction, batch: ClipBatch, options: ExportOptions,
                  colmap_frames: Optional[Sequence[np.ndarray]], tick: export.Tick = None) -> dict:
    """Fuse the chosen instant with the same point filter as the PLYs and write the COLMAP model."""
    point_filter = options.point_filter
    num_t = pred.depth.shape[0]
    if not 0 <= options.colmap_instant < num_t:
        raise export.ExportError(f"COLMAP instant must be in 0..{num_t - 1}, got {options.colmap_instant}")
    min_conf = export.resolve_conf_threshold(pred, batch, point_filter)
    points, colors = export.fused_points(pred, batch, options.colmap_instant, point_filter, min_conf)
    points, colors = export.voxel_downsample(points, colors, point_filter.voxel)
    limit = options.colmap_max_points
    if limit and len(points) > limit:
        keep = np.sort(np.random.default_rng(0).choice(len(points), size=limit, replace=False))
        points, colors = points[keep], colors[keep]
    return write_colmap_model(out_dir / "colmap", pred, batch, options.colmap_instant, points, colors,
                              frames=colmap_frames, fmt=options.colmap_format, tick=tick)
