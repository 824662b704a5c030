"""``evaluate_prediction`` on in-memory predictions: known errors give the values computed by hand, and
the ATE equals an independent Umeyama implementation's."""

from __future__ import annotations

import numpy as np
import pytest

from page4d_cli.data import read_gt_clip, write_gt_clip
from page4d_cli.data.synth_scene import look_at
from page4d_cli.eval import EvalError, EvalOptions, PredictedClip, evaluate_prediction
from page4d_cli.pipeline.geometry import invert_rigid

W, H = 56, 42  # a 4 x 3 grid of 14-pixel patches


def rig_poses(num_t: int, num_v: int, moving: bool = True, seed: int = 0) -> np.ndarray:
    """camera_from_world [T, V, 4, 4]: cameras on a ring looking at the origin, drifting when ``moving``."""
    rng = np.random.default_rng(seed)
    poses = np.zeros((num_t, num_v, 4, 4))
    for t in range(num_t):
        for v in range(num_v):
            angle = 2 * np.pi * v / num_v + (0.02 * t if moving else 0.0)
            eye = np.array([3 * np.cos(angle), 1.0 + (0.05 * t if moving else 0.0), 3 * np.sin(angle)])
            poses[t, v] = look_at(eye + (rng.normal(0, 0.01, 3) if moving else 0.0), np.zeros(3))
    return poses


def make_gt(tmp_path, poses, depth=None, masks=None, name="gt"):
    num_t, num_v = poses.shape[:2]
    K = np.array([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]])
    if depth is None:
        depth = np.random.default_rng(1).uniform(2.0, 4.0, (num_t, num_v, H, W)).astype(np.float32)
    images = np.zeros((num_t, num_v, H, W, 3), np.uint8)
    path = write_gt_clip(tmp_path / name, [f"cam{v:02d}" for v in range(num_v)], images, np.repeat(K[None], num_v, 0),
                         poses, depth, masks, depth_format="npy")
    return read_gt_clip(path), depth


def prediction_from_gt(gt, frames, poses=None, depth=None, masks=None) -> PredictedClip:
    num_t, num_v = frames.shape
    get = lambda fn: [[fn(v, frames[t, v]) for v in range(num_v)] for t in range(num_t)]  # noqa: E731
    return PredictedClip(
        camera_names=list(gt.camera_names), gt_frames=frames,
        camera_from_world=np.array(get(gt.cam_from_world)) if poses is None else poses,
        K=np.array(get(gt.K)), depth=get(gt.depth) if depth is None else depth,
        dynamic_mask=get(gt.mask) if masks is None and gt.has_masks else masks)


def all_frames(num_t, num_v):
    return np.repeat(np.arange(num_t)[:, None], num_v, axis=1)


def similarity_of(poses: np.ndarray, scale: float, R0: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """Camera-from-world in the world X' = scale (R0 X + t0), cameras scaled with it."""
    out = np.array(poses, copy=True)
    R, t = poses[..., :3, :3], poses[..., :3, 3]
    out[..., :3, :3] = R @ R0.T
    out[..., :3, 3] = scale * (t - np.einsum("...ij,j->...i", R @ R0.T, t0))
    return out


def test_scaled_and_moved_prediction_has_zero_aligned_errors(tmp_path):
    poses = rig_poses(5, 3)
    masks = np.zeros((5, 3, H, W), bool)
    masks[:, :, 10:20, 14:28] = True
    gt, depth = make_gt(tmp_path, poses, masks=masks)
    R0 = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    R0 *= np.sign(np.linalg.det(R0))
    moved = similarity_of(poses, 2.5, R0, np.array([1.0, -2.0, 0.5]))
    pred = prediction_from_gt(gt, all_frames(5, 3), poses=moved, depth=[[d * 2.5 for d in row] for row in depth])
    result = evaluate_prediction(pred, gt)
    summary = result.summary()
    for key in ("ate", "rpe_trans", "rpe_rot_deg", "rig_trans", "rig_rot_deg", "abs_rel", "abs_rel_dynamic",
                "abs_rel_static", "accuracy", "completeness", "chamfer"):
        assert summary[key] == pytest.approx(0.0, abs=1e-6), key
    assert summary["delta_1_25"] == 1.0 and summary["mask_iou"] == 1.0
    assert result.cameras.alignment.scale == pytest.approx(1 / 2.5)
    assert result.depth.alignment.scale == pytest.approx(1 / 2.5, rel=1e-6)
    assert result.missing_frames == {}


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Independent Sim(3) Umeyama (1991): target ~ s R source + t, points [N, 3]."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    cov = b.T @ a / len(source)
    U, D, Vt = np.linalg.svd(cov)
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = U @ S @ Vt
    s = np.trace(np.diag(D) @ S) / (a**2).sum(axis=1).mean()
    return s, R, mu_t - s * R @ mu_s


def test_noisy_centres_give_ate_sigma_sqrt3_and_match_an_independent_umeyama(tmp_path):
    num_t, num_v, sigma = 40, 4, 0.02
    poses = rig_poses(num_t, num_v)
    gt, _ = make_gt(tmp_path, poses)
    noisy = np.array(poses, copy=True)
    centres = invert_rigid(poses)[..., :3, 3] + np.random.default_rng(7).normal(0, sigma, (num_t, num_v, 3))
    noisy[..., :3, 3] = -np.einsum("...ij,...j->...i", poses[..., :3, :3], centres)
    result = evaluate_prediction(prediction_from_gt(gt, all_frames(num_t, num_v), poses=noisy), gt,
                                 EvalOptions(points=False))
    assert result.cameras.ate == pytest.approx(sigma * np.sqrt(3), rel=0.10)
    s, R, t = umeyama(centres.reshape(-1, 3), invert_rigid(poses)[..., :3, 3].reshape(-1, 3))
    aligned = s * centres.reshape(-1, 3) @ R.T + t
    own_ate = np.sqrt(np.mean(np.sum((aligned - invert_rigid(poses)[..., :3, 3].reshape(-1, 3)) ** 2, axis=1)))
    assert result.cameras.ate == pytest.approx(own_ate, rel=1e-9)
    assert result.cameras.rig_rot_deg == pytest.approx(0.0, abs=1e-9)  # rotations untouched


def test_depth_off_by_epsilon_on_half_the_pixels(tmp_path):
    eps = 0.6
    poses = rig_poses(2, 2)
    depth = np.full((2, 2, H, W), 2.0, np.float32)
    gt, _ = make_gt(tmp_path, poses, depth=depth)
    pred_depth = depth.astype(np.float64).copy()
    pred_depth[..., W // 2:] *= 1 + eps  # the right half of every map
    result = evaluate_prediction(prediction_from_gt(gt, all_frames(2, 2), depth=pred_depth), gt)
    # by hand: median(pred) = 2 (1 + eps/2) (even count, halves) -> s = 1 / (1 + eps/2) = 1/1.3;
    # left |s - 1| = 0.3/1.3, right |s (1 + eps) - 1| = 0.3/1.3; left ratio 1.3 > 1.25, right 1.6/1.3 < 1.25
    assert result.depth.alignment.scale == pytest.approx(1 / 1.3)
    assert result.depth.all.abs_rel == pytest.approx(0.3 / 1.3)
    assert result.depth.all.delta_1_25 == pytest.approx(0.5)
    assert result.depth.all.pixels == 2 * 2 * H * W
    shifted = evaluate_prediction(prediction_from_gt(gt, all_frames(2, 2), depth=pred_depth), gt,
                                  EvalOptions(depth_align="scale-shift"))
    # least squares a*p + b = 2 with p in {2, 3.2}: exact fit (a = 0, b = 2) -> no error
    assert shifted.depth.all.abs_rel == pytest.approx(0.0, abs=1e-9)


def test_mask_shifted_by_one_patch(tmp_path):
    poses = rig_poses(1, 2, moving=False)
    masks = np.zeros((1, 2, H, W), bool)
    masks[:, :, 14:28, 0:28] = True  # two patches wide
    gt, _ = make_gt(tmp_path, poses, masks=masks)
    pred_masks = [[np.roll(masks[0, v], 14, axis=1) for v in range(2)]]  # one patch (14 px) to the right
    result = evaluate_prediction(prediction_from_gt(gt, all_frames(1, 2), masks=pred_masks), gt)
    assert result.mask_iou == pytest.approx(14 * 14 / (3 * 14 * 14))  # overlap 1 patch, union 3 patches
    assert result.per_camera[1].mask_iou == pytest.approx(1 / 3)
    assert result.cameras.rpe_trans is None  # one instant: no consecutive pair


def test_static_two_camera_rig_falls_back_and_subset_reports_missing_frames(tmp_path):
    poses = rig_poses(6, 2, moving=False)
    gt, depth = make_gt(tmp_path, poses)
    frames = all_frames(6, 2)[[1, 4]]
    moved = similarity_of(poses[[1, 4]], 0.5, np.eye(3), np.array([0.0, 1.0, 0.0]))
    pred = prediction_from_gt(gt, frames, poses=moved, depth=[[depth[f, v] * 0.5 for v in range(2)] for f in (1, 4)])
    result = evaluate_prediction(pred, gt)
    assert "rotation mean" in result.cameras.alignment.method  # two static centres cannot fix a Sim(3)
    assert result.cameras.ate == pytest.approx(0.0, abs=1e-9) and result.points.chamfer == pytest.approx(0, abs=1e-6)
    assert result.missing_frames == {"cam00": [0, 2, 3, 5], "cam01": [0, 2, 3, 5]}
    assert result.per_camera[0].gt_frames == [1, 4]


def test_mismatched_predictions_fail_with_one_line(tmp_path):
    poses = rig_poses(3, 2)
    gt, _ = make_gt(tmp_path, poses)
    pred = prediction_from_gt(gt, all_frames(3, 2))
    pred.camera_names = ["cam00", "cam07"]
    with pytest.raises(EvalError, match="only in the prediction: cam07; only in the ground truth: cam01"):
        evaluate_prediction(pred, gt)
    pred = prediction_from_gt(gt, all_frames(3, 2))
    pred.depth[1][0] = np.ones((10, 10))
    with pytest.raises(EvalError, match="original resolution"):
        evaluate_prediction(pred, gt)
    pred = prediction_from_gt(gt, all_frames(3, 2))
    pred.gt_frames = all_frames(3, 2) + 1
    with pytest.raises(EvalError, match="GT frame 3 requested"):
        evaluate_prediction(pred, gt)
