"""Long clips: Umeyama, window planning and stitching of per-window predictions.

Each window's fake "prediction" is the exact ground truth expressed in a frame of its own (a random
similarity per window, as the network would give: own origin, own scale). Stitching must bring all
windows into ONE frame: the result equals GT up to a single global similarity.
"""

from __future__ import annotations

import numpy as np
import pytest

from page4d_cli.data.synth_scene import look_at
from page4d_cli.pipeline import geometry
from page4d_cli.pipeline.align import (
    AlignmentError,
    WindowStitcher,
    plan_windows,
    slice_clip_batch,
    transform_prediction,
    umeyama_sim3,
)
from page4d_cli.pipeline.types import CameraInfo, ClipBatch, ImageTransform, Prediction
from tests.helpers import random_rotation

H, W = 14, 28
T, V = 12, 2
Y_DOWN = (0.0, -1.0, 0.0)  # this scene's world has y down, like the cameras' (OpenCV) axes


def stitch_windows(windows, predictions, max_points_per_overlap=50_000, seed=0):
    """All per-window predictions through one ``WindowStitcher`` (what ``reconstruct`` does as they come)."""
    stitcher = WindowStitcher(windows, max_points_per_overlap, seed)
    for prediction in predictions:
        stitcher.add(prediction)
    return stitcher.result()


def random_similarity(rng):
    return float(np.exp(rng.uniform(-1.5, 1.5))), random_rotation(rng), rng.normal(0, 3, 3)


def gt_clip(seed=0):
    """Exact depth of a moving ball inside a room sphere, seen by 2 moving cameras over T instants."""
    rng = np.random.default_rng(seed)
    k = np.array([[20.0, 0, W / 2], [0, 20.0, H / 2], [0, 0, 1]])
    xs, ys = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays_cam = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(k).T
    ext = np.zeros((T, V, 4, 4))
    depth = np.zeros((T, V, H, W))
    for t in range(T):
        ball = np.array([np.sin(t / 3), 0.2, 5.0 + 0.1 * t])
        for v in range(V):
            c = np.array([1.5 * v - 0.7 + 0.1 * t, -0.2, 0.05 * t]) + rng.normal(0, 0.05, 3)
            ext[t, v] = look_at(c, ball + rng.normal(0, 0.3, 3), up=Y_DOWN)
            rays = rays_cam @ ext[t, v, :3, :3]  # world directions with camera-z = 1
            best = np.full((H, W), np.inf)
            for centre, radius, inside in [(np.zeros(3), 15.0, True), (ball, 1.0, False)]:
                oc = c - centre
                a, b = np.sum(rays**2, -1), 2 * rays @ oc
                disc = b * b - 4 * a * (oc @ oc - radius**2)
                root = np.sqrt(np.maximum(disc, 0))
                lam = (-b + root) / (2 * a) if inside else np.where(disc > 0, (-b - root) / (2 * a), np.inf)
                best = np.minimum(best, np.where(lam > 0, lam, np.inf))
            depth[t, v] = best
    conf = rng.uniform(1, 5, (T, V, H, W))
    points = np.stack([np.stack([geometry.unproject_depth(depth[t, v], k, ext[t, v]) for v in range(V)])
                       for t in range(T)])
    return Prediction(extrinsic=ext, intrinsic=np.broadcast_to(k, (T, V, 3, 3)).copy(), depth=depth,
                      depth_conf=conf, world_points=points, world_points_conf=conf.copy(),
                      dynamic_mask=(rng.uniform(size=(T, V, H, W)) > 0.5).astype(np.float32))


def window_prediction(gt: Prediction, start: int, stop: int, similarity) -> Prediction:
    """GT of instants start:stop, expressed in a frame X' = s R X + t of its own.

    Built from camera poses (not with the library's transform): the camera moves to centre
    s R C + t with orientation R R_c^T, and every length (depth) is multiplied by s.
    """
    s, r, t = similarity
    sub = {name: None if value is None else value[start:stop].copy() for name, value in vars(gt).items()}
    rot_c = sub["extrinsic"][..., :3, :3]
    centres = geometry.camera_centers(sub["extrinsic"])
    pose = np.zeros_like(sub["extrinsic"])
    pose[..., :3, :3] = r @ np.swapaxes(rot_c, -1, -2)
    pose[..., :3, 3] = s * centres @ r.T + t
    pose[..., 3, 3] = 1
    sub["extrinsic"] = np.linalg.inv(pose)
    sub["depth"] = sub["depth"] * s
    sub["world_points"] = s * sub["world_points"] @ r.T + t
    return Prediction(**sub)


# ----------------------------------------------------------------------------- Umeyama


def test_umeyama_recovers_exact_similarity():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(40, 3))
    for _ in range(5):
        s, r, t = random_similarity(rng)
        dst = s * src @ r.T + t
        s_hat, r_hat, t_hat = umeyama_sim3(src, dst, weights=rng.uniform(0.1, 2, 40))
        assert np.isclose(s_hat, s, rtol=1e-10)
        assert np.allclose(r_hat, r, atol=1e-10) and np.isclose(np.linalg.det(r_hat), 1)
        assert np.allclose(t_hat, t, atol=1e-9)


def test_umeyama_weights_ignore_outliers_with_zero_weight():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(30, 3))
    s, r, t = random_similarity(rng)
    dst = s * src @ r.T + t
    dst[:5] += rng.normal(0, 10, (5, 3))
    weights = np.r_[np.zeros(5), np.ones(25)]
    s_hat, r_hat, _ = umeyama_sim3(src, dst, weights)
    assert np.isclose(s_hat, s) and np.allclose(r_hat, r)
    s_bad, _, _ = umeyama_sim3(src, dst)
    assert not np.isclose(s_bad, s)


def test_umeyama_planar_points_are_fine():
    rng = np.random.default_rng(5)
    src = np.c_[rng.normal(size=(20, 2)), np.zeros(20)]
    s, r, t = random_similarity(rng)
    s_hat, r_hat, t_hat = umeyama_sim3(src, s * src @ r.T + t)
    assert np.isclose(s_hat, s) and np.allclose(r_hat, r) and np.allclose(t_hat, t)


@pytest.mark.parametrize("src", [
    np.zeros((5, 3)),  # coincident
    np.outer(np.arange(6.0), [1.0, 2.0, 3.0]),  # collinear
    np.ones((2, 3)) * [[0.0], [1.0]],  # too few
    np.array([[0, 0, 0], [1, 0, 0], [0, 1, np.nan]], float),  # non-finite
])
def test_umeyama_degenerate_input_is_a_clear_error(src):
    with pytest.raises(AlignmentError):
        umeyama_sim3(src, src * 2.0 + 1.0)


# ----------------------------------------------------------------------------- planning


@pytest.mark.parametrize("num, per_pass, overlap", [(12, 5, 2), (30, 8, 3), (9, 4, 1), (7, 7, 2), (3, 10, 2),
                                                    (24, 4, 1), (24, 12, 2), (25, 3, 2)])
def test_plan_windows_covers_with_overlap(num, per_pass, overlap):
    windows = plan_windows(num, per_pass, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == num
    sizes = [stop - start for start, stop in windows]
    assert max(sizes) <= per_pass and max(sizes) - min(sizes) <= 1  # even split, no stub window
    for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
        assert s0 < s1 and e1 > e0 and e0 - s1 == overlap  # exactly the overlap is computed twice
    fewest = 1 if num <= per_pass else -(-(num - overlap) // (per_pass - overlap))
    assert len(windows) == fewest


def test_window_plan_repeats_only_the_overlap():
    """T = 24, V = 4 at 48 images per pass: was [0, 12], [10, 22], [12, 24] (10 instants twice)."""
    assert plan_windows(24, 48 // 4, 2) == [(0, 10), (8, 17), (15, 24)]
    windows = plan_windows(24, 12, 2)
    assert sum(stop - start for start, stop in windows) == 24 + 2 * (len(windows) - 1) == 28


def test_plan_windows_rejects_bad_settings():
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(12, 5, 0)
    with pytest.raises(ValueError):
        plan_windows(12, 2, 2)


def test_slice_clip_batch():
    tr = ImageTransform((W, H), (W, H), (1.0, 1.0), (0.0, 0.0), "crop", (0, 0, W, H))
    batch = ClipBatch(cameras=[CameraInfo("a", None, "images", (W, H), None, T)] * V,
                      images=np.zeros((T, V, 3, H, W), np.float32), transforms=[tr] * V,
                      frame_indices=np.arange(T * V).reshape(T, V), timestamps=np.zeros((T, V)))
    part = slice_clip_batch(batch, 3, 8)
    assert part.images.shape[0] == 5 and part.frame_indices[0, 0] == 6 and part.ext_masks is None


# ----------------------------------------------------------------------------- stitching


def test_stitching_recovers_one_consistent_frame():
    rng = np.random.default_rng(7)
    gt = gt_clip()
    windows = plan_windows(T, 10 // V, overlap=2)  # 10 images per pass: 5 instants
    assert len(windows) >= 3
    preds = [window_prediction(gt, a, b, random_similarity(rng)) for a, b in windows]
    stitched, alignments = stitch_windows(windows, preds, max_points_per_overlap=3000)
    assert stitched.depth.shape == gt.depth.shape and stitched.extrinsic.shape == gt.extrinsic.shape
    assert all(a.rms_residual < 1e-9 for a in alignments)

    # One global similarity maps GT onto the stitched result: fit it on the camera centres...
    c_gt = geometry.camera_centers(gt.extrinsic).reshape(-1, 3)
    c_st = geometry.camera_centers(stitched.extrinsic).reshape(-1, 3)
    s, r, t = umeyama_sim3(c_gt, c_st)
    extent = np.ptp(c_st, axis=0).max()
    assert np.abs(s * c_gt @ r.T + t - c_st).max() < 1e-6 * extent
    # ...every depth is scaled by the same s, rotations differ by the same R, K is untouched...
    assert np.allclose(stitched.depth / gt.depth, s, rtol=1e-6)
    assert np.allclose(stitched.extrinsic[..., :3, :3] @ r, gt.extrinsic[..., :3, :3], atol=1e-6)
    assert np.array_equal(stitched.intrinsic, gt.intrinsic)
    # ...and the points from depth + cameras agree with the transformed head points everywhere.
    for t_ in (0, 5, 11):
        for v in range(V):
            from_depth = geometry.unproject_depth(stitched.depth[t_, v], stitched.intrinsic[t_, v],
                                                  stitched.extrinsic[t_, v])
            assert np.abs(from_depth - stitched.world_points[t_, v]).max() < 1e-6 * s * 15
            assert np.abs(from_depth - (s * gt.world_points[t_, v] @ r.T + t)).max() < 1e-6 * s * 15
    assert np.array_equal(stitched.dynamic_mask, gt.dynamic_mask)


def test_stitching_reference_window_stays_put_and_errors_are_clear():
    rng = np.random.default_rng(8)
    gt = gt_clip(1)
    windows = plan_windows(T, 6, overlap=3)
    preds = [window_prediction(gt, a, b, random_similarity(rng)) for a, b in windows]
    stitched, _ = stitch_windows(windows, preds)
    a, b = windows[0]
    assert np.array_equal(stitched.extrinsic[a:b], preds[0].extrinsic)
    assert np.array_equal(stitched.depth[a:b], preds[0].depth)
    with pytest.raises(ValueError, match="must start inside"):
        stitch_windows([(0, 6), (6, 12)], [preds[0], window_prediction(gt, 6, 12, random_similarity(rng))])
    flat = window_prediction(gt, *windows[1], random_similarity(rng))
    flat.depth[:] = np.nan  # nothing usable on the overlap
    with pytest.raises(AlignmentError, match="cannot align window"):
        stitch_windows(windows[:2], [preds[0], flat])


def test_transform_prediction_moves_cameras_depth_and_points_together():
    rng = np.random.default_rng(9)
    gt = gt_clip(2)
    similarity = random_similarity(rng)
    moved = transform_prediction(gt, *similarity)
    expected = window_prediction(gt, 0, T, similarity)
    assert np.allclose(moved.extrinsic, expected.extrinsic, atol=1e-9)
    assert np.allclose(moved.depth, expected.depth, rtol=1e-12)
    assert np.allclose(moved.world_points, expected.world_points, atol=1e-9)
    assert moved.extrinsic.dtype == gt.extrinsic.dtype


def test_stitching_ignores_a_few_wrong_depths_on_the_overlap():
    rng = np.random.default_rng(10)
    gt = gt_clip(3)
    windows = plan_windows(T, 6, overlap=2)
    preds = [window_prediction(gt, a, b, random_similarity(rng)) for a, b in windows]
    shared = windows[0][1] - windows[1][0]
    wrong = rng.uniform(size=preds[1].depth[:shared].shape) < 0.05  # 5 % gross errors
    preds[1].depth[:shared][wrong] *= 3.0
    stitched, alignments = stitch_windows(windows, preds)
    assert alignments[1].num_points < wrong.size * 0.97  # the wrong ones were dropped
    c_gt = geometry.camera_centers(gt.extrinsic).reshape(-1, 3)
    c_st = geometry.camera_centers(stitched.extrinsic).reshape(-1, 3)
    s, r, t = umeyama_sim3(c_gt, c_st)
    assert np.abs(s * c_gt @ r.T + t - c_st).max() < 1e-6 * np.ptp(c_st, axis=0).max()
