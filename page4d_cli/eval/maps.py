"""Depth, point and mask metrics at the original resolution (pure numpy/scipy, no files).

Depth (the video-depth benchmarks' convention): on GT-valid pixels (GT > 0), after ONE per-clip alignment
of the prediction, either ``median`` scaling (s = median(GT) / median(pred) over pixels valid in both) or
``scale-shift`` (least squares a * pred + b against GT). Pixels where the prediction is invalid (0) stay 0,
i.e. count as errors. AbsRel = mean |d - d*| / d*, delta = share of pixels with max(d / d*, d* / d) < 1.25.

Points: GT cloud = GT depth unprojected with GT cameras, predicted cloud = predicted depth with predicted
cameras, mapped by the cameras' Sim(3); accuracy = mean distance from each predicted point to the nearest
GT point, completeness = the reverse, Chamfer = their mean (GT units). Masks: IoU of dynamic pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEPTH_ALIGN_CHOICES = ("median", "scale-shift")
DELTA_THRESHOLD = 1.25


@dataclass
class DepthAlignment:
    mode: str
    scale: float
    shift: float = 0.0

    def apply(self, depth: np.ndarray) -> np.ndarray:
        """Aligned depth; invalid predictions (<= 0 or non-finite) stay 0."""
        valid = np.isfinite(depth) & (depth > 0)
        return np.where(valid, self.scale * depth + self.shift, 0.0)


def fit_depth_alignment(pred: list[np.ndarray], gt: list[np.ndarray], mode: str = "median") -> DepthAlignment:
    """One alignment for a whole clip from lists of maps (any shapes, pairs of equal shape)."""
    if mode not in DEPTH_ALIGN_CHOICES:
        raise ValueError(f"depth alignment must be one of {', '.join(DEPTH_ALIGN_CHOICES)}, got {mode!r}")
    both_p, both_g = [], []
    for p, g in zip(pred, gt):
        valid = (g > 0) & np.isfinite(p) & (p > 0)
        both_p.append(p[valid].astype(np.float64))
        both_g.append(g[valid].astype(np.float64))
    p, g = np.concatenate(both_p), np.concatenate(both_g)
    if p.size == 0:
        return DepthAlignment(mode, 1.0, 0.0)
    if mode == "median":
        return DepthAlignment(mode, float(np.median(g) / np.median(p)))
    design = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, g, rcond=None)
    return DepthAlignment(mode, float(scale), float(shift))


@dataclass
class DepthSums:
    """Running sums over GT-valid pixels, so metrics pool exactly over any grouping of maps."""

    abs_rel: float = 0.0
    inliers: int = 0
    pixels: int = 0

    def add(self, aligned_pred: np.ndarray, gt: np.ndarray, select: np.ndarray | None = None) -> None:
        keep = gt > 0 if select is None else (gt > 0) & select
        g = gt[keep].astype(np.float64)
        p = aligned_pred[keep].astype(np.float64)
        self.abs_rel += float(np.sum(np.abs(p - g) / g))
        safe = np.where(p > 0, p, 1.0)
        ratio = np.where(p > 0, np.maximum(p / g, g / safe), np.inf)  # an invalid prediction is never an inlier
        self.inliers += int(np.sum(ratio < DELTA_THRESHOLD))
        self.pixels += int(g.size)

    def __iadd__(self, other: "DepthSums") -> "DepthSums":
        self.abs_rel += other.abs_rel
        self.inliers += other.inliers
        self.pixels += other.pixels
        return self

    def result(self) -> dict:
        """{abs_rel, delta_1_25, pixels}; metrics None when there is no GT-valid pixel."""
        if self.pixels == 0:
            return {"abs_rel": None, "delta_1_25": None, "pixels": 0}
        return {"abs_rel": self.abs_rel / self.pixels, "delta_1_25": self.inliers / self.pixels, "pixels": self.pixels}


@dataclass
class MaskSums:
    intersection: int = 0
    union: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.intersection += int(np.sum(pred & gt))
        self.union += int(np.sum(pred | gt))

    def __iadd__(self, other: "MaskSums") -> "MaskSums":
        self.intersection += other.intersection
        self.union += other.union
        return self

    def iou(self) -> float:
        """Intersection over union; 1.0 when both masks are empty (nothing to find, nothing found)."""
        return self.intersection / self.union if self.union else 1.0


def subsample(points: np.ndarray, max_points: int) -> np.ndarray:
    """An even stride subset of at most ``max_points`` rows (deterministic)."""
    if len(points) <= max_points:
        return points
    return points[np.linspace(0, len(points) - 1, max_points).astype(np.int64)]


def cloud_distances(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Accuracy / completeness / Chamfer between clouds ``[N, 3]`` and ``[M, 3]`` (None when one is empty)."""
    from scipy.spatial import cKDTree

    if len(pred) == 0 or len(gt) == 0:
        return {"accuracy": None, "completeness": None, "chamfer": None, "pred_points": len(pred),
                "gt_points": len(gt)}
    accuracy = float(cKDTree(gt).query(pred, k=1)[0].mean())
    completeness = float(cKDTree(pred).query(gt, k=1)[0].mean())
    return {"accuracy": accuracy, "completeness": completeness, "chamfer": (accuracy + completeness) / 2,
            "pred_points": len(pred), "gt_points": len(gt)}
