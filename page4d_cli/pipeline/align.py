"""Long clips: run the network on overlapping windows of instants and stitch them into one frame.

Why: memory grows with the number of images per pass, so a clip of T instants x V cameras is cut
into windows of at most ``max_images_per_pass // V`` instants. Each window's prediction has its own
world frame (camera 0 at the window's first instant) and its own scale. Consecutive windows share
``overlap`` instants; on those we know the same pixels in both frames, which fixes the similarity
(scale s, rotation R, translation t) between the two frames.

Cost: every shared instant is computed twice, so a clip needs n = ``ceil((T - overlap) / (L - overlap))``
passes of at most L instants (``plan_windows`` splits the T + (n - 1) overlap instants evenly), at most
``1 + overlap / (L - overlap)`` times one pass; keep ``overlap`` small (2 is plenty for exact geometry,
2-4 for noisy predictions) relative to L. Memory: ``WindowStitcher`` aligns each window as it comes
out of the network, so only one window's prediction is held besides the clip's outputs.

Math (one similarity per window, mapping its world frame into the reference frame = window 0's)::

    X_ref = s R X_k + t                                (points, world_points head)
    X_cam_ref = s X_cam_k                              (the camera frame scales with the world)
    E'  = diag(s, s, s, 1) . E . S^-1,  S = [[s R, t], [0, 1]]
        = [[R_c R^T, s t_c - R_c R^T t], [0, 1]]       for E = [[R_c, t_c], [0, 1]]
    depth' = s depth                                   (z-depth is a camera-frame length)
    K' = K                                             (a similarity does not change the image)

Window k is aligned to window k-1 *after* k-1 was moved into the reference frame, so the estimate
is direct (no chained composition). The fit is confidence-weighted Umeyama on the same pixels of
the shared instants unprojected in both frames, refitted without gross outliers (``robust_sim3``).
Instants covered by two windows are taken from the earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from models.errors import Page4DError
from page4d_cli.pipeline import geometry
from page4d_cli.pipeline.options import DEFAULT_OVERLAP
from page4d_cli.pipeline.types import ClipBatch, Prediction


class AlignmentError(Page4DError, ValueError):
    """A similarity cannot be estimated (too few, collinear or non-finite correspondences)."""


# ----------------------------------------------------------------------------- Umeyama


def umeyama_sim3(src: np.ndarray, dst: np.ndarray, weights: Optional[np.ndarray] = None
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~= s R src + t`` (Umeyama 1991), optionally weighted.

    src, dst ``[N, 3]``; weights ``[N]`` >= 0. Returns (s, R ``[3, 3]`` with det +1, t ``[3]``).
    With weighted means mu and covariance C = sum w (dst - mu_d)(src - mu_s)^T / sum w = U D V^T:
    R = U S V^T with S = diag(1, 1, sign(det U det V)) (no reflections), s = tr(D S) / var_src,
    t = mu_d - s R mu_s. Raises ``AlignmentError`` for fewer than 3 usable points, non-finite
    input, zero total weight, or (near-)collinear / coincident points.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise AlignmentError(f"umeyama_sim3 needs two [N, 3] arrays of equal shape, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (len(src),):
        raise AlignmentError(f"umeyama_sim3: {len(w)} weights for {len(src)} points")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst)) and np.all(np.isfinite(w))):
        raise AlignmentError("umeyama_sim3: non-finite points or weights")
    if np.any(w < 0):
        raise AlignmentError("umeyama_sim3: negative weights")
    if np.count_nonzero(w) < 3 or w.sum() <= 0:
        raise AlignmentError(f"umeyama_sim3: need at least 3 points with positive weight, got {np.count_nonzero(w)}")
    w = w / w.sum()
    mu_src = w @ src
    mu_dst = w @ dst
    src_c = src - mu_src
    dst_c = dst - mu_dst
    var_src = float(w @ np.sum(src_c**2, axis=1))
    covariance = (dst_c * w[:, None]).T @ src_c
    u, d, vt = np.linalg.svd(covariance)
    scale_ref = max(var_src, float(w @ np.sum(dst_c**2, axis=1)))
    if var_src <= 1e-24 or d[0] <= 1e-12 * scale_ref or d[1] <= 1e-9 * d[0]:
        raise AlignmentError("umeyama_sim3: points are coincident or collinear; the similarity is not determined")
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rotation = (u * sign) @ vt
    scale = float(np.sum(d * sign) / var_src)
    if scale <= 0:
        raise AlignmentError("umeyama_sim3: estimated scale is not positive (inconsistent correspondences)")
    translation = mu_dst - scale * rotation @ mu_src
    return scale, rotation, translation


def robust_sim3(src: np.ndarray, dst: np.ndarray, weights: Optional[np.ndarray] = None, rounds: int = 2,
                 cutoff: float = 3.0) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``umeyama_sim3`` refitted without gross outliers; returns (s, R, t, inlier mask ``[N]``).

    After each fit, correspondences whose residual exceeds ``cutoff`` x the median residual get
    weight 0 and the similarity is refitted (a few wrong depths, e.g. at occlusion boundaries
    seen differently by two windows, would otherwise bend the whole fit). A round is only kept if
    at least half of the points survive it.
    """
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    inliers = w > 0
    scale, rotation, translation = umeyama_sim3(src, dst, w)
    for _ in range(rounds):
        residual = np.linalg.norm(dst - (scale * src @ rotation.T + translation), axis=1)
        keep = inliers & (residual <= cutoff * np.median(residual[inliers]) + 1e-12 * np.abs(dst).max())
        if keep.sum() < max(3, inliers.sum() // 2) or keep.sum() == inliers.sum():
            break
        inliers = keep
        scale, rotation, translation = umeyama_sim3(src, dst, np.where(inliers, w, 0.0))
    return scale, rotation, translation, inliers


# ----------------------------------------------------------------------------- window planning


def plan_windows(num_instants: int, max_instants: int, overlap: int = DEFAULT_OVERLAP) -> list[tuple[int, int]]:
    """Overlapping windows ``[(start, stop), ...]`` (stop exclusive) covering ``range(num_instants)``.

    One window when everything fits. Otherwise the fewest windows of at most ``max_instants`` that
    share exactly ``overlap`` instants with their neighbour: ``n = ceil((T - overlap) / (L - overlap))``
    windows over ``T + (n - 1) * overlap`` instants in all, split as evenly as possible (sizes differ by
    at most one; no instant is computed more often than the overlap asks, and no window is a stub).
    """
    if num_instants < 1:
        raise ValueError(f"need at least one instant, got {num_instants}")
    if overlap < 1:
        raise ValueError(f"overlap must be >= 1 instant (windows are aligned on shared instants), got {overlap}")
    if num_instants <= max_instants:
        return [(0, num_instants)]
    if max_instants <= overlap:
        raise ValueError(f"a pass of {max_instants} instants cannot overlap by {overlap}; "
                         "raise max_images_per_pass or lower the overlap")
    count = -(-(num_instants - overlap) // (max_instants - overlap))
    base, longer = divmod(num_instants + (count - 1) * overlap, count)
    windows, start = [], 0
    for k in range(count):
        stop = start + base + (1 if k < longer else 0)
        windows.append((start, stop))
        start = stop - overlap
    return windows


def slice_clip_batch(batch: ClipBatch, start: int, stop: int) -> ClipBatch:
    """The instants ``start:stop`` of a clip (what one window pass feeds the network)."""
    return replace(
        batch,
        images=batch.images[start:stop],
        frame_indices=batch.frame_indices[start:stop],
        timestamps=batch.timestamps[start:stop],
        ext_masks=None if batch.ext_masks is None else batch.ext_masks[start:stop],
        warnings=list(batch.warnings),
    )


# ----------------------------------------------------------------------------- stitching


@dataclass
class WindowAlignment:
    """How one window was brought into the reference frame: X_ref = scale * rotation @ X + translation."""

    start: int
    stop: int
    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    num_points: int  # inlier correspondences used (0 for the reference window)
    rms_residual: float  # weighted RMS of the inliers' fit, relative to the points' spread


def transform_prediction(pred: Prediction, scale: float, rotation: np.ndarray, translation: np.ndarray) -> Prediction:
    """Apply X -> s R X + t to a prediction's world frame (see the module docstring for the math)."""
    similarity_inv = np.eye(4)
    similarity_inv[:3, :3] = rotation.T / scale
    similarity_inv[:3, 3] = -rotation.T @ translation / scale
    scale_cam = np.diag([scale, scale, scale, 1.0])
    extrinsic = scale_cam @ pred.extrinsic.astype(np.float64) @ similarity_inv
    world_points = None
    if pred.world_points is not None:
        moved = scale * pred.world_points.astype(np.float64) @ rotation.T + translation
        world_points = moved.astype(pred.world_points.dtype)
    return replace(
        pred,
        extrinsic=extrinsic.astype(pred.extrinsic.dtype),
        depth=(pred.depth * scale).astype(pred.depth.dtype),
        world_points=world_points,
    )


def _overlap_correspondences(earlier: Prediction, later: Prediction, earlier_rows: slice, later_rows: slice,
                             max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same pixels of the shared instants, unprojected in both frames: (src ``[N, 3]``, dst, weights).

    Weight = the smaller of the two depth confidences (a pixel is only as good as its worse view).
    """
    src, dst, weights = [], [], []
    for t_e, t_l in zip(range(*earlier_rows.indices(earlier.depth.shape[0])),
                        range(*later_rows.indices(later.depth.shape[0]))):
        for v in range(earlier.depth.shape[1]):
            d_e, d_l = earlier.depth[t_e, v], later.depth[t_l, v]
            ok = geometry.valid_depth(d_e) & geometry.valid_depth(d_l)
            conf = np.minimum(earlier.depth_conf[t_e, v], later.depth_conf[t_l, v])
            ok &= np.isfinite(conf) & (conf > 0)
            p_e = geometry.unproject_depth(d_e, earlier.intrinsic[t_e, v], earlier.extrinsic[t_e, v])
            p_l = geometry.unproject_depth(d_l, later.intrinsic[t_l, v], later.extrinsic[t_l, v])
            dst.append(p_e[ok])
            src.append(p_l[ok])
            weights.append(conf[ok])
    src_all, dst_all, w_all = np.concatenate(src), np.concatenate(dst), np.concatenate(weights)
    if len(src_all) > max_points:
        keep = rng.choice(len(src_all), size=max_points, replace=False)
        src_all, dst_all, w_all = src_all[keep], dst_all[keep], w_all[keep]
    return src_all, dst_all, w_all


_FIELDS = ("extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf", "dynamic_mask")


def _rows(pred: Prediction, rows: slice) -> Prediction:
    """The instants ``rows`` of a prediction (views, no copy)."""
    return replace(pred, **{name: getattr(pred, name)[rows] for name in _FIELDS if getattr(pred, name) is not None})


class WindowStitcher:
    """Stitch window predictions one at a time, as they come out of the network (``add``), into one
    prediction for the whole clip in window 0's frame (``result``).

    Memory: the clip-sized output arrays (allocated by the first window) + the window being added +
    the last ``overlap`` instants of the previous window (aligned), so a windowed run never holds
    all window predictions, nor a second copy of the clip. A single window is returned as is.
    """

    def __init__(self, windows: Sequence[tuple[int, int]], max_points_per_overlap: int = 50_000,
                 seed: int = 0) -> None:
        if not windows or windows[0][0] != 0:
            raise ValueError(f"the first window must start at instant 0, got {list(windows)[:1]}")
        self.windows = list(windows)
        self.max_points = max_points_per_overlap
        self.rng = np.random.default_rng(seed)
        self.alignments: list[WindowAlignment] = []
        self._out: Optional[dict] = None  # name -> [T, ...] array
        self._tail: Optional[Prediction] = None  # previous window's instants from the next window's start, aligned
        self._single: Optional[Prediction] = None

    def add(self, prediction: Prediction) -> WindowAlignment:
        """Align the next window to the previous one and copy its new instants into the output."""
        k = len(self.alignments)
        if k >= len(self.windows):
            raise ValueError(f"{k + 1} predictions for {len(self.windows)} windows")
        start, stop = self.windows[k]
        if prediction.depth.shape[0] != stop - start:
            raise ValueError(f"window {self.windows[k]} got a prediction of {prediction.depth.shape[0]} instants")
        if len(self.windows) == 1:
            self._single = prediction
            alignment = WindowAlignment(start, stop, 1.0, np.eye(3), np.zeros(3), 0, 0.0)
            self.alignments.append(alignment)
            return alignment
        if k == 0:
            alignment = WindowAlignment(start, stop, 1.0, np.eye(3), np.zeros(3), 0, 0.0)
            aligned, first_new = prediction, 0
            self._allocate(prediction)
        else:
            prev_start, prev_stop = self.windows[k - 1]
            if not prev_start < start < prev_stop or stop <= prev_stop:
                raise ValueError(f"window {self.windows[k]} must start inside {self.windows[k - 1]} and end after it")
            shared = prev_stop - start
            alignment = self._align(k, prediction, shared)
            aligned = transform_prediction(prediction, alignment.scale, alignment.rotation, alignment.translation)
            first_new = shared
        for name, out in self._out.items():
            out[start + first_new:stop] = getattr(aligned, name)[first_new:]
        if k + 1 < len(self.windows):
            next_start = self.windows[k + 1][0]
            # a copy: the window's own arrays (network output) can then be freed
            self._tail = replace(aligned, **{name: getattr(aligned, name)[next_start - start:].copy()
                                             for name in _FIELDS if getattr(aligned, name) is not None})
        self.alignments.append(alignment)
        return alignment

    def _allocate(self, first: Prediction) -> None:
        num_t = self.windows[-1][1]
        self._out = {name: np.empty((num_t, *value.shape[1:]), dtype=value.dtype)
                     for name in _FIELDS if (value := getattr(first, name)) is not None}

    def _align(self, k: int, prediction: Prediction, shared: int) -> WindowAlignment:
        start, stop = self.windows[k]
        src, dst, w = _overlap_correspondences(self._tail, prediction, slice(0, shared), slice(0, shared),
                                               self.max_points, self.rng)
        try:
            scale, rotation, translation, inliers = robust_sim3(src, dst, w)
        except AlignmentError as exc:
            raise AlignmentError(f"cannot align window {self.windows[k]} to {self.windows[k - 1]}: {exc}") from exc
        src, dst, w = src[inliers], dst[inliers], w[inliers]
        residual = dst - (scale * src @ rotation.T + translation)
        spread = np.sqrt(np.average(np.sum((dst - np.average(dst, axis=0, weights=w)) ** 2, axis=1), weights=w))
        rms = float(np.sqrt(np.average(np.sum(residual**2, axis=1), weights=w)) / max(spread, 1e-300))
        return WindowAlignment(start, stop, scale, rotation, translation, len(src), rms)

    def result(self) -> tuple[Prediction, list[WindowAlignment]]:
        """The stitched prediction (optional fields only if every window had them) and the alignments."""
        if len(self.alignments) != len(self.windows):
            raise ValueError(f"{len(self.alignments)} of {len(self.windows)} windows were added")
        if self._single is not None:
            return self._single, list(self.alignments)
        out = self._out
        return Prediction(**{name: out.get(name) for name in _FIELDS}), list(self.alignments)
