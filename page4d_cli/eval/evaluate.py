"""``evaluate``: a ``reconstruct`` output (or predictions in memory) against a ground-truth clip.

    from page4d_cli.eval import evaluate, evaluate_prediction, PredictedClip, EvalOptions
    result = evaluate("page4d_out/clip_0000", "clips/clip_0000")          # files -> EvalResult
    result = evaluate_prediction(PredictedClip(...), read_gt_clip(path))   # arrays (training)

Matching: predicted instant t of camera NAME is GT frame ``gt.frame_of_source(NAME, source_frame)`` (both
recorded in cameras.json), so runs with --frames/--stride/windows evaluate correctly. Cameras must be the
same set with the same image sizes; GT frames the prediction does not cover are listed in
``missing_frames`` (reported, not an error). Metric definitions: ``trajectory.py`` (cameras) and
``maps.py`` (depth, points, masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from page4d_cli.data.cameras_file import read_cameras_file
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.gt_clip import GTClip, read_gt_clip
from page4d_cli.eval import trajectory
from page4d_cli.eval.maps import (
    DEPTH_ALIGN_CHOICES,
    DepthSums,
    MaskSums,
    cloud_distances,
    fit_depth_alignment,
    subsample,
)
from page4d_cli.eval.result import (
    CameraMetrics,
    CameraResult,
    DepthMetrics,
    DepthScore,
    EvalResult,
    InstantResult,
    PointMetrics,
)
from page4d_cli.pipeline import geometry

Maps = Union[np.ndarray, Sequence[Sequence[np.ndarray]]]


class EvalError(DataFormatError):
    """Prediction and ground truth do not describe the same cameras / frames / sizes (one line)."""


@dataclass(frozen=True)
class EvalOptions:
    depth_align: str = "median"  # median | scale-shift
    points: bool = True  # accuracy / completeness / Chamfer (the slowest part)
    max_points: int = 20000  # per cloud and instant (even subsample)

    def __post_init__(self) -> None:
        if self.depth_align not in DEPTH_ALIGN_CHOICES:
            raise EvalError(f"--align {self.depth_align}: use one of {', '.join(DEPTH_ALIGN_CHOICES)}")
        if self.max_points < 1:
            raise EvalError(f"--max-points {self.max_points}: must be at least 1")


@dataclass
class PredictedClip:
    """Predictions in memory, at each camera's ORIGINAL resolution, for ``evaluate_prediction``.

    camera_names: V names (axis 1 order), each a camera of the GT clip.
    gt_frames: ``[T, V]`` int, the GT frame index (``GTClip`` frame) of each (instant, camera).
    camera_from_world: ``[T, V, 4, 4]`` in any world frame and scale (one Sim(3) aligns it).
    K: ``[T, V, 3, 3]`` original pixels; needed for the point metrics (None skips them).
    depth: ``[T, V, H, W]`` or ``[T][V] -> [H_v, W_v]`` z-depth, 0 = invalid; None skips depth and points.
    dynamic_mask: same layout, bool (or probability, > 0.5 = dynamic); None skips the mask IoU.
    """

    camera_names: list[str]
    gt_frames: np.ndarray
    camera_from_world: np.ndarray
    K: Optional[np.ndarray] = None
    depth: Optional[Maps] = None
    dynamic_mask: Optional[Maps] = None
    source: Optional[str] = None  # where it came from (recorded in the result)


def _check_prediction(pred: PredictedClip, gt: GTClip) -> tuple[int, int]:
    frames = np.asarray(pred.gt_frames)
    num_t, num_v = frames.shape
    where = pred.source or "prediction"
    if pred.camera_from_world.shape != (num_t, num_v, 4, 4) or len(pred.camera_names) != num_v:
        raise EvalError(f"{where}: camera_from_world {list(pred.camera_from_world.shape)} / {len(pred.camera_names)} "
                        f"names do not match gt_frames [T={num_t}, V={num_v}]")
    unknown = [name for name in pred.camera_names if name not in gt.camera_names]
    missing = [name for name in gt.camera_names if name not in pred.camera_names]
    if unknown or missing:
        raise EvalError(f"{where}: cameras differ from {gt.root} (only in the prediction: {', '.join(unknown) or '-'}; "
                        f"only in the ground truth: {', '.join(missing) or '-'}); evaluate a reconstruction of that clip")
    if frames.min() < 0 or frames.max() >= gt.num_frames:
        raise EvalError(f"{where}: GT frame {int(frames.max())} requested; {gt.root} has frames 0..{gt.num_frames - 1}")
    if not np.isfinite(pred.camera_from_world).all():
        raise EvalError(f"{where}: predicted camera poses are not finite; the reconstruction failed")
    return num_t, num_v


def _map(maps: Optional[Maps], t: int, v: int) -> Optional[np.ndarray]:
    return None if maps is None else np.asarray(maps[t][v])


def evaluate_prediction(pred: PredictedClip, gt: GTClip, options: Optional[EvalOptions] = None) -> EvalResult:
    """Every metric of ``pred`` against ``gt`` (see the module docstring); returns an ``EvalResult``.

    Raises ``EvalError`` (one line) when cameras, frames or map sizes do not match.
    """
    options = EvalOptions() if options is None else options
    num_t, num_v = _check_prediction(pred, gt)
    frames = np.asarray(pred.gt_frames, dtype=np.int64)
    gt_index = [gt.camera_index(name) for name in pred.camera_names]
    gt_poses = np.stack([[gt.cam_from_world(gt_index[v], frames[t, v]) for v in range(num_v)] for t in range(num_t)])
    pred_poses = np.asarray(pred.camera_from_world, dtype=np.float64)

    gt_depth = pred_depth = None
    if pred.depth is not None:
        gt_depth = [[gt.depth(gt_index[v], frames[t, v]) for v in range(num_v)] for t in range(num_t)]
        pred_depth = [[_map(pred.depth, t, v).astype(np.float64) for v in range(num_v)] for t in range(num_t)]
        for t in range(num_t):
            for v in range(num_v):
                if pred_depth[t][v].shape != gt_depth[t][v].shape:
                    raise EvalError(f"{pred.source or 'prediction'}: depth of camera {pred.camera_names[v]} is "
                                    f"{pred_depth[t][v].shape[::-1]} (W, H) but the GT's is {gt_depth[t][v].shape[::-1]}; "
                                    f"predictions must be at the original resolution")
    depth_alignment = None
    if pred_depth is not None:
        depth_alignment = fit_depth_alignment([d for row in pred_depth for d in row],
                                              [d for row in gt_depth for d in row], options.depth_align)

    # cameras: one Sim(3) from all centres (evo Umeyama), then ATE / RPE / rig errors
    fallback_scale = depth_alignment.scale if depth_alignment is not None else 1.0
    sim3 = trajectory.align_sim3(pred_poses.reshape(-1, 4, 4), gt_poses.reshape(-1, 4, 4), fallback_scale)
    aligned = sim3.apply_world_from_camera(geometry.invert_rigid(pred_poses))  # world-from-camera, GT world
    centre_errors = trajectory.ate(aligned.reshape(-1, 4, 4), gt_poses.reshape(-1, 4, 4)).reshape(num_t, num_v)
    rpe_per_camera = [trajectory.rpe(aligned[:, v], gt_poses[:, v]) for v in range(num_v)]
    rig_trans, rig_rot = trajectory.rig_errors(pred_poses, gt_poses, sim3.scale)
    pairs = num_v * (num_v - 1) // 2
    cameras = CameraMetrics(
        ate=trajectory.rmse(centre_errors), rpe_trans=trajectory.rmse(np.concatenate([r[0] for r in rpe_per_camera])),
        rpe_rot_deg=trajectory.rmse(np.concatenate([r[1] for r in rpe_per_camera])),
        rig_trans=trajectory.rmse(rig_trans), rig_rot_deg=trajectory.rmse(rig_rot), num_poses=num_t * num_v,
        alignment=sim3)

    # depth, masks and points, pooled per camera, per instant and over the clip
    has_gt_masks = gt.has_masks
    depth_cam = [DepthSums() for _ in range(num_v)]
    depth_inst = [DepthSums() for _ in range(num_t)]
    depth_dyn, depth_static = DepthSums(), DepthSums()
    mask_cam = [MaskSums() for _ in range(num_v)]
    mask_inst = [MaskSums() for _ in range(num_t)]
    points_inst: list[Optional[dict]] = [None] * num_t
    for t in range(num_t):
        gt_cloud, pred_cloud = [], []
        for v in range(num_v):
            gt_mask = gt.mask(gt_index[v], frames[t, v]) if (has_gt_masks and (
                pred_depth is not None or pred.dynamic_mask is not None)) else None
            if pred_depth is not None:
                aligned_depth = depth_alignment.apply(pred_depth[t][v])
                sums = DepthSums()
                sums.add(aligned_depth, gt_depth[t][v])
                depth_cam[v] += sums
                depth_inst[t] += sums
                if gt_mask is not None:
                    depth_dyn.add(aligned_depth, gt_depth[t][v], gt_mask)
                    depth_static.add(aligned_depth, gt_depth[t][v], ~gt_mask)
                if options.points and pred.K is not None:
                    g = gt_depth[t][v]
                    gt_points = geometry.unproject_depth(g, gt.K(gt_index[v], frames[t, v]), gt_poses[t, v])
                    gt_cloud.append(gt_points[g > 0])
                    p = pred_depth[t][v]
                    valid = np.isfinite(p) & (p > 0)
                    pred_points = geometry.unproject_depth(np.where(valid, p, 0.0), np.asarray(pred.K[t, v]),
                                                           pred_poses[t, v])
                    pred_cloud.append(sim3.apply_points(pred_points[valid]))
            if pred.dynamic_mask is not None and gt_mask is not None:
                predicted = _map(pred.dynamic_mask, t, v)
                predicted = predicted > 0.5 if predicted.dtype != bool else predicted
                if predicted.shape != gt_mask.shape:
                    raise EvalError(f"{pred.source or 'prediction'}: mask of camera {pred.camera_names[v]} is "
                                    f"{predicted.shape[::-1]} (W, H) but the GT's is {gt_mask.shape[::-1]}")
                mask_cam[v].add(predicted, gt_mask)
                mask_inst[t].add(predicted, gt_mask)
        if gt_cloud:
            points_inst[t] = cloud_distances(subsample(np.concatenate(pred_cloud), options.max_points),
                                             subsample(np.concatenate(gt_cloud), options.max_points))

    with_depth = pred_depth is not None
    with_masks = pred.dynamic_mask is not None and has_gt_masks
    depth = None
    if with_depth:
        total = DepthSums()
        for sums in depth_cam:
            total += sums
        depth = DepthMetrics(all=DepthScore(**total.result()),
                             dynamic=DepthScore(**depth_dyn.result()) if has_gt_masks else None,
                             static=DepthScore(**depth_static.result()) if has_gt_masks else None,
                             alignment=depth_alignment)
    points = None
    if any(p is not None for p in points_inst):
        def mean_of(key: str) -> Optional[float]:
            values = [p[key] for p in points_inst if p is not None and p[key] is not None]
            return float(np.mean(values)) if values else None
        points = PointMetrics(mean_of("accuracy"), mean_of("completeness"), mean_of("chamfer"), options.max_points)
    mask_iou = None
    if with_masks:
        total_mask = MaskSums()
        for sums in mask_cam:
            total_mask += sums
        mask_iou = total_mask.iou()

    per_camera = []
    missing = {}
    for v, name in enumerate(pred.camera_names):
        covered = set(frames[:, v].tolist())
        missing[name] = [f for f in range(gt.num_frames) if f not in covered]
        per_camera.append(CameraResult(
            name=name, ate=trajectory.rmse(centre_errors[:, v]), rpe_trans=trajectory.rmse(rpe_per_camera[v][0]),
            rpe_rot_deg=trajectory.rmse(rpe_per_camera[v][1]),
            depth=DepthScore(**depth_cam[v].result()) if with_depth else None,
            mask_iou=mask_cam[v].iou() if with_masks else None, gt_frames=frames[:, v].tolist(),
            missing_frames=missing[name]))
    per_instant = []
    for t in range(num_t):
        pair_rows = np.arange(pairs) * num_t + t  # rig_errors orders pairs outer, instants inner
        per_instant.append(InstantResult(
            t=t, ate=trajectory.rmse(centre_errors[t]),
            rig_trans=trajectory.rmse(rig_trans[pair_rows]) if pairs else None,
            rig_rot_deg=trajectory.rmse(rig_rot[pair_rows]) if pairs else None,
            depth=DepthScore(**depth_inst[t].result()) if with_depth else None, points=points_inst[t],
            mask_iou=mask_inst[t].iou() if with_masks else None))
    return EvalResult(prediction=pred.source, ground_truth=str(gt.root), camera_names=list(pred.camera_names),
                      num_instants=num_t, cameras=cameras, depth=depth, points=points, mask_iou=mask_iou,
                      per_camera=per_camera, per_instant=per_instant,
                      missing_frames={k: v for k, v in missing.items() if v})


def read_prediction(folder: Union[str, Path], gt: GTClip) -> PredictedClip:
    """A ``reconstruct`` output folder as a ``PredictedClip`` matched to ``gt`` by camera name and source frame."""
    folder = Path(folder)
    recon = read_cameras_file(folder / "cameras.json")
    names = recon.camera_names
    unknown = [name for name in names if name not in gt.camera_names]
    missing = [name for name in gt.camera_names if name not in names]
    if unknown or missing:
        raise EvalError(f"{recon.path}: cameras differ from {gt.root} (only in the prediction: {', '.join(unknown) or '-'}; "
                        f"only in the ground truth: {', '.join(missing) or '-'}); evaluate a reconstruction of that clip")
    num_t, num_v = recon.num_instants, len(names)
    frames = np.zeros((num_t, num_v), dtype=np.int64)
    for v, track in enumerate(recon.cameras):
        if tuple(track.image_size) != tuple(gt.image_size(track.name)):
            raise EvalError(f"{recon.path}: camera {track.name} is {track.image_size[0]}x{track.image_size[1]} but "
                            f"{gt.root} has it at {gt.image_size(track.name)[0]}x{gt.image_size(track.name)[1]}; "
                            f"evaluate a reconstruction of that clip")
        for t, source in enumerate(track.source_frames):
            frame = gt.frame_of_source(track.name, int(source))
            if frame is None:
                raise EvalError(f"{recon.path}: instant {t} of camera {track.name} is source frame {int(source)}, "
                                f"which {gt.root} has no ground truth for; reconstruct within the GT frames")
            frames[t, v] = frame
    depth = None
    if recon.depth is not None:
        depth = [[recon.depth_map(v, t) for v in range(num_v)] for t in range(num_t)]
    masks = None
    if recon.has_masks():
        masks = [[recon.mask_map(v, t) for v in range(num_v)] for t in range(num_t)]
    return PredictedClip(camera_names=names, gt_frames=frames,
                         camera_from_world=np.stack([track.camera_from_world for track in recon.cameras], axis=1),
                         K=np.stack([track.K for track in recon.cameras], axis=1), depth=depth, dynamic_mask=masks,
                         source=str(folder))


def evaluate(prediction: Union[str, Path], ground_truth: Union[str, Path, GTClip],
             options: Optional[EvalOptions] = None) -> EvalResult:
    """Evaluate a ``reconstruct`` output folder against a ground-truth clip (path or ``GTClip``)."""
    gt = ground_truth if isinstance(ground_truth, GTClip) else read_gt_clip(ground_truth)
    return evaluate_prediction(read_prediction(prediction, gt), gt, options)
