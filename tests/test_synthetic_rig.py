"""The committed synthetic rig (examples/cams, with its exact ground truth in examples/cams/gt)."""

from __future__ import annotations

import numpy as np
import pytest

from page4d_cli.pipeline.preprocess import resize_mask
from page4d_cli.pipeline.read_clip import read_clip
from tests.helpers import CAMS, example_module

rig_module = example_module("make_synthetic_rig")


@pytest.fixture(scope="module")
def rig():
    return rig_module.render_rig(224, 168, 24, cameras=4)


@pytest.fixture(scope="module")
def committed_gt():
    return rig_module.load_ground_truth(CAMS)


def unproject(depth: np.ndarray, K: np.ndarray, camera_from_world: np.ndarray) -> np.ndarray:
    """[H, W] z-depth -> [H, W, 3] world points (pixel centres at (j + .5, i + .5))."""
    H, W = depth.shape
    cols, rows = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=-1) @ np.linalg.inv(K).T
    camera_points = rays * depth[..., None]
    world_from_camera = np.linalg.inv(camera_from_world)
    return camera_points @ world_from_camera[:3, :3].T + world_from_camera[:3, 3]


def test_committed_videos_decode_to_4_cameras_by_24_frames(rig):
    batch = read_clip(CAMS, size=224)
    assert [cam.name for cam in batch.cameras] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(cam.size == (224, 168) and cam.num_frames == 24 and cam.fps == pytest.approx(30.0)
               for cam in batch.cameras)
    assert batch.images.shape == (24, 4, 3, 168, 224)
    assert batch.warnings == []
    # The network size equals the original here, so the decoded frames match the renderer's pixels
    # up to video compression.
    rendered = rig["images"].transpose(0, 1, 4, 2, 3).astype(np.float32) / 255.0
    assert np.abs(batch.images - rendered).mean() < 0.04


def test_committed_ground_truth_matches_a_fresh_render(rig, committed_gt):
    np.testing.assert_allclose(committed_gt["intrinsics"], rig["intrinsics"], atol=1e-12)
    np.testing.assert_allclose(committed_gt["extrinsics"], rig["extrinsics"], atol=1e-12)
    assert committed_gt["image_size"] == (224, 168) and committed_gt["fps"] == 30.0
    assert committed_gt["depth"].shape == (24, 4, 168, 224)
    np.testing.assert_allclose(committed_gt["depth"], rig["depth"], atol=rig_module.DEPTH_SCALE * 0.51)
    assert np.mean(committed_gt["dynamic_mask"] != rig["dynamic_mask"]) < 1e-5


def test_world_frame_is_camera_0_and_depth_unprojects_to_world_points(rig):
    np.testing.assert_allclose(rig["extrinsics"][0], np.eye(4), atol=1e-12)
    for v in range(4):
        R = rig["extrinsics"][v][:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
    for t in (0, 23):
        for v in range(4):
            points = unproject(rig["depth"][t, v], rig["intrinsics"][v], rig["extrinsics"][v])
            np.testing.assert_allclose(points, rig["world_points"][t, v], atol=2e-5)


@pytest.mark.parametrize("a, b", [(0, 1), (2, 3), (1, 3)])
def test_two_cameras_see_the_same_world_points(rig, a, b):
    """Pixels of camera a, projected into camera b where b sees the same surface, unproject to the same
    world points from b's own depth (fails if K or the extrinsics' convention were wrong)."""
    t = 12
    points_a = rig["world_points"][t, a].reshape(-1, 3).astype(np.float64)
    E_b, K_b = rig["extrinsics"][b], rig["intrinsics"][b]
    in_b = points_a @ E_b[:3, :3].T + E_b[:3, 3]
    uv = in_b @ K_b.T
    uv = uv[:, :2] / uv[:, 2:]
    cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    H, W = rig["depth"].shape[2:]
    inside = (in_b[:, 2] > 0) & (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H)
    depth_b = rig["depth"][t, b][rows[inside], cols[inside]]
    visible = np.abs(depth_b - in_b[inside, 2]) < 0.03 * depth_b  # not hidden behind something else
    assert visible.mean() > 0.5 and visible.sum() > 0.2 * H * W
    points_b = rig["world_points"][t, b][rows[inside], cols[inside]][visible]
    distance = np.linalg.norm(points_b - points_a[inside][visible], axis=1)
    footprint = depth_b[visible] / K_b[0, 0]  # one pixel at that depth
    assert np.median(distance / footprint) < 1.0
    assert np.percentile(distance / footprint, 95) < 3.0


def test_dynamic_mask_is_the_moving_sphere(rig):
    moving = rig["dynamic_mask"]
    assert moving.any(axis=(2, 3)).all()  # every camera sees the sphere in every frame
    centres = rig["sphere_centres"]
    assert np.linalg.norm(centres[-1] - centres[0]) > 1.0
    for t in (0, 11, 23):
        on_sphere = rig["world_points"][t][moving[t]]
        radius = np.linalg.norm(on_sphere - centres[t], axis=1)
        np.testing.assert_allclose(radius, rig_module.SPHERE_RADIUS, atol=1e-4)
    static = ~moving.any(axis=0)  # pixels never covered by the sphere keep their depth
    np.testing.assert_array_equal(np.where(static, rig["depth"][0], 0), np.where(static, rig["depth"][-1], 0))


def test_auto_masks_find_the_sphere_in_the_committed_videos(committed_gt):
    batch = read_clip(CAMS, frames=4, size=224, auto_masks=True)
    for v in range(4):
        for t, index in enumerate(batch.frame_indices[:, v]):
            truth = resize_mask(committed_gt["dynamic_mask"][index, v], batch.transforms[v]) > 0
            found = batch.ext_masks[t, v] > 0
            assert (truth & found).sum() / (truth | found).sum() > 0.8
