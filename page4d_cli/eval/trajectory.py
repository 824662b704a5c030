"""Camera metrics with ``evo`` (the field's trajectory-evaluation library): Sim(3) Umeyama alignment,
ATE, per-camera RPE, and the rig's camera-to-camera error within an instant.

Poses here are camera-from-world ``[..., 4, 4]`` (page4d's convention); evo works on world-from-camera
SE(3) poses, so they are inverted on the way in. Predictions are up to scale: every metric is computed
after ONE Sim(3) (scale s, rotation R, translation t) mapping predicted world points X to s R X + t in the
ground truth's world, estimated from all camera centres of all cameras and instants (evo's
``umeyama_alignment`` with scale). Distances are in ground-truth units, angles in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from page4d_cli.pipeline.geometry import invert_rigid


@dataclass
class Sim3:
    """X_gt = scale * R @ X_pred + t.  ``method`` says how it was estimated."""

    scale: float
    R: np.ndarray  # [3, 3]
    t: np.ndarray  # [3]
    method: str = "umeyama"

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """``[..., 3]`` predicted world points -> ground-truth world."""
        return self.scale * points @ self.R.T + self.t

    def apply_world_from_camera(self, poses: np.ndarray) -> np.ndarray:
        """World-from-camera ``[..., 4, 4]`` -> aligned world-from-camera (rotation stays orthonormal)."""
        out = np.array(poses, dtype=np.float64, copy=True)
        out[..., :3, :3] = self.R @ poses[..., :3, :3]
        out[..., :3, 3] = self.apply_points(poses[..., :3, 3])
        return out

    def to_dict(self) -> dict:
        return {"method": self.method, "scale": float(self.scale), "R": self.R.tolist(), "t": self.t.tolist()}


def _rotation_mean(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations ``[N, 3, 3]`` (projection of their sum onto SO(3))."""
    u, _, vt = np.linalg.svd(rotations.sum(axis=0))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


def align_sim3(pred_cam_from_world: np.ndarray, gt_cam_from_world: np.ndarray,
               fallback_scale: float = 1.0) -> Sim3:
    """Sim(3) taking the predicted world to the ground truth's, from all camera centres ``[N, 4, 4]``.

    evo's Umeyama (with scale) on the centres. When the centres cannot fix a similarity (fewer than 3
    distinct non-collinear centres: one camera that does not move, two static cameras), the rotation is the
    mean of the per-camera rotations that map the predicted orientations onto the GT ones, the scale is the
    ratio of centre spreads (``fallback_scale`` when the predicted centres coincide, e.g. the depth ratio)
    and the translation matches the centroids.
    """
    from evo.core.geometry import GeometryException, umeyama_alignment

    pred_centres = invert_rigid(pred_cam_from_world)[:, :3, 3]
    gt_centres = invert_rigid(gt_cam_from_world)[:, :3, 3]
    try:
        R, t, scale = umeyama_alignment(pred_centres.T, gt_centres.T, with_scale=True)
        if np.isfinite(scale) and scale > 0 and np.isfinite(R).all():
            return Sim3(float(scale), np.asarray(R), np.asarray(t), "umeyama")
    except GeometryException:
        pass
    # R_gt = R_pred @ R^T for every camera  =>  R = R_gt^T R_pred, averaged over cameras.
    R = _rotation_mean(np.swapaxes(gt_cam_from_world[:, :3, :3], 1, 2) @ pred_cam_from_world[:, :3, :3])
    spread_pred = np.linalg.norm(pred_centres - pred_centres.mean(0), axis=1).mean()
    spread_gt = np.linalg.norm(gt_centres - gt_centres.mean(0), axis=1).mean()
    scale = spread_gt / spread_pred if spread_pred > 1e-12 and spread_gt > 1e-12 else fallback_scale
    t = gt_centres.mean(0) - scale * R @ pred_centres.mean(0)
    return Sim3(float(scale), R, t, "rotation mean (camera centres degenerate)")


def _path(cam_from_world: np.ndarray):
    from evo.core.trajectory import PosePath3D

    return PosePath3D(poses_se3=list(invert_rigid(np.asarray(cam_from_world, dtype=np.float64))))


def ate(aligned_world_from_camera: np.ndarray, gt_cam_from_world: np.ndarray) -> np.ndarray:
    """Per-pose translation error ``[N]`` (evo APE, translation part) of aligned world-from-camera poses."""
    from evo.core import metrics
    from evo.core.trajectory import PosePath3D

    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((_path(gt_cam_from_world), PosePath3D(poses_se3=list(aligned_world_from_camera))))
    return np.asarray(ape.error, dtype=np.float64)


def rpe(aligned_world_from_camera: np.ndarray, gt_cam_from_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """evo RPE between consecutive poses of ONE camera ``[T, 4, 4]``: (translation errors ``[T-1]`` in GT
    units, rotation errors ``[T-1]`` in degrees); empty arrays when T < 2."""
    from evo.core import metrics
    from evo.core.trajectory import PosePath3D

    if len(gt_cam_from_world) < 2:
        return np.zeros(0), np.zeros(0)
    data = (_path(gt_cam_from_world), PosePath3D(poses_se3=list(aligned_world_from_camera)))
    errors = []
    for relation in (metrics.PoseRelation.translation_part, metrics.PoseRelation.rotation_angle_deg):
        metric = metrics.RPE(relation, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        metric.process_data(data)
        errors.append(np.asarray(metric.error, dtype=np.float64))
    return errors[0], errors[1]


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle in degrees of rotation matrices ``[..., 3, 3]`` (atan2 form: accurate near 0, unlike arccos)."""
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    return np.degrees(np.arctan2(np.linalg.norm(skew, axis=-1) / 2.0, cos))


def rig_errors(pred_cam_from_world: np.ndarray, gt_cam_from_world: np.ndarray, scale: float,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-camera relative pose error within each instant, every pair i < j.

    Inputs ``[T, V, 4, 4]`` camera-from-world. Relative pose j<-i = E_j E_i^-1 (independent of the world
    frame); its translation is scaled by the Sim(3) ``scale``. Returns (translation errors ``[T * P]`` in GT
    units, rotation errors ``[T * P]`` in degrees), P = V (V - 1) / 2; empty when V < 2.
    """
    num_v = gt_cam_from_world.shape[1]
    trans, rot = [], []
    for i in range(num_v):
        for j in range(i + 1, num_v):
            rel_pred = pred_cam_from_world[:, j] @ invert_rigid(pred_cam_from_world[:, i])
            rel_gt = gt_cam_from_world[:, j] @ invert_rigid(gt_cam_from_world[:, i])
            trans.append(np.linalg.norm(scale * rel_pred[:, :3, 3] - rel_gt[:, :3, 3], axis=1))
            rot.append(rotation_angle_deg(np.swapaxes(rel_gt[:, :3, :3], 1, 2) @ rel_pred[:, :3, :3]))
    if not trans:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(trans), np.concatenate(rot)


def rmse(values: np.ndarray) -> float | None:
    """Root mean square; None for no values."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.sqrt(np.mean(values**2))) if values.size else None
