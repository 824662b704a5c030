"""The typed result of ``evaluate`` (also written as ``eval.json``). Distances are in ground-truth units,
angles in degrees; a metric is None when it cannot be computed (e.g. RPE with one instant)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from page4d_cli.eval.maps import DepthAlignment
from page4d_cli.eval.trajectory import Sim3

EVAL_FORMAT = "page4d-eval"
EVAL_VERSION = 1


@dataclass
class DepthScore:
    abs_rel: Optional[float]
    delta_1_25: Optional[float]
    pixels: int


@dataclass
class CameraMetrics:
    """ATE: RMSE of camera-centre errors over all cameras and instants after the Sim(3). RPE: RMSE over
    consecutive instants of each camera (evo, delta = 1 instant). Rig: RMSE over camera pairs within an
    instant of the relative pose error (translation scaled by the Sim(3) scale)."""

    ate: Optional[float]
    rpe_trans: Optional[float]
    rpe_rot_deg: Optional[float]
    rig_trans: Optional[float]
    rig_rot_deg: Optional[float]
    num_poses: int
    alignment: Sim3


@dataclass
class DepthMetrics:
    all: DepthScore
    dynamic: Optional[DepthScore]  # on GT-dynamic pixels (None when the GT has no masks)
    static: Optional[DepthScore]
    alignment: DepthAlignment


@dataclass
class PointMetrics:
    """Means over instants of the per-instant accuracy, completeness and Chamfer distance."""

    accuracy: Optional[float]
    completeness: Optional[float]
    chamfer: Optional[float]
    max_points: int  # per cloud and instant (even subsample)


@dataclass
class CameraResult:
    name: str
    ate: Optional[float]
    rpe_trans: Optional[float]
    rpe_rot_deg: Optional[float]
    depth: Optional[DepthScore]
    mask_iou: Optional[float]
    gt_frames: list[int]  # GT frame of each predicted instant
    missing_frames: list[int]  # GT frames of this camera the prediction does not cover


@dataclass
class InstantResult:
    t: int
    ate: Optional[float]
    rig_trans: Optional[float]
    rig_rot_deg: Optional[float]
    depth: Optional[DepthScore]
    points: Optional[dict]  # accuracy, completeness, chamfer, pred_points, gt_points
    mask_iou: Optional[float]


@dataclass
class EvalResult:
    """Everything ``evaluate`` measured for one (prediction, ground-truth clip) pair."""

    prediction: Optional[str]
    ground_truth: str
    camera_names: list[str]
    num_instants: int
    cameras: CameraMetrics
    depth: Optional[DepthMetrics]
    points: Optional[PointMetrics]
    mask_iou: Optional[float]  # None when the prediction or the GT has no masks
    per_camera: list[CameraResult]
    per_instant: list[InstantResult]
    missing_frames: dict[str, list[int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Optional[float]]:
        """The headline numbers, flat (for tables and training logs)."""
        depth = self.depth
        return {
            "ate": self.cameras.ate, "rpe_trans": self.cameras.rpe_trans, "rpe_rot_deg": self.cameras.rpe_rot_deg,
            "rig_trans": self.cameras.rig_trans, "rig_rot_deg": self.cameras.rig_rot_deg,
            "abs_rel": depth.all.abs_rel if depth else None, "delta_1_25": depth.all.delta_1_25 if depth else None,
            "abs_rel_dynamic": depth.dynamic.abs_rel if depth and depth.dynamic else None,
            "abs_rel_static": depth.static.abs_rel if depth and depth.static else None,
            "accuracy": self.points.accuracy if self.points else None,
            "completeness": self.points.completeness if self.points else None,
            "chamfer": self.points.chamfer if self.points else None,
            "mask_iou": self.mask_iou,
        }

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cameras"]["alignment"] = self.cameras.alignment.to_dict()
        return {"format": EVAL_FORMAT, "version": EVAL_VERSION, "summary": self.summary(), **data}
