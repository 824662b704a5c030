"""The world frame is what cameras.json says, in every output, with ``--ref-camera`` too.

The reference camera at the first instant has exactly the identity camera-from-world in cameras.json,
its TUM trajectory and the COLMAP model, and the point cloud is in that camera's frame; output
folders keep the input camera order and names whichever camera is the reference.
"""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import pytest

from page4d_cli.pipeline.types import ClipBatch, Prediction
from page4d_cli.pipeline.world_frame import rebase_on_reference, to_input_order
from tests.helpers import CAMS, tiny_run

IDENTITY = np.eye(4).tolist()


@pytest.fixture(scope="module")
def ref_cam2_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAGE4D_HOME", str(tmp_path_factory.mktemp("home")))
        tiny_run(CAMS, out, "--frames", 3, "--size", 70, "--ref-camera", "cam2", "--colmap", "--depth-format", "npy",
                 "--conf-percentile", 0, "--no-edge-filter")
    return out


def test_reference_camera_is_exactly_the_identity_everywhere(ref_cam2_run):
    out = ref_cam2_run
    cameras = json.loads((out / "cameras.json").read_text())
    # Input order and names kept: --ref-camera does not renumber cam00..cam03.
    assert [(c["name"], c["dir"]) for c in cameras["cameras"]] == [(f"cam{v}", f"cam{v:02d}") for v in range(4)]
    assert cameras["reference_camera"] == {"name": "cam2", "index": 2, "dir": "cam02"}
    assert "cam2" in cameras["world_frame"]
    assert cameras["cameras"][2]["frames"][0]["camera_from_world"] == IDENTITY
    assert cameras["cameras"][0]["frames"][0]["camera_from_world"] != IDENTITY

    tum = (out / "trajectory" / "cam02.txt").read_text().splitlines()[1].split()
    assert [float(x) for x in tum[1:]] == [0, 0, 0, 0, 0, 0, 1]

    images = [line.split() for line in (out / "colmap" / "sparse" / "0" / "images.txt").read_text().splitlines()
              if line.endswith(".png")]
    by_name = {fields[-1]: fields for fields in images}
    assert [float(x) for x in by_name["cam02.png"][1:8]] == [1, 0, 0, 0, 0, 0, 0]


def _unprojected_without_pose(out, camera, dir_name):
    """A camera's depth pixels of instant 0 unprojected with its K and the identity pose: ``[N, 3]``."""
    k = np.array(camera["frames"][0]["K"])
    depth = np.load(out / "depth" / dir_name / "frame_0000.npy")
    rows, cols = np.nonzero(depth > 0)
    rays = np.linalg.inv(k) @ np.stack([cols + 0.5, rows + 0.5, np.ones_like(cols, dtype=float)])
    return (rays * depth[rows, cols]).T


def test_points_are_in_the_reference_cameras_frame(ref_cam2_run):
    """cam2's own pixels of instant 0, unprojected with its K and NO pose, lie on the PLY's points, and
    cam0's do once moved to the world by cameras.json's pose: one frame for the cloud and the cameras."""
    out = ref_cam2_run
    cameras = json.loads((out / "cameras.json").read_text())["cameras"]
    cloud = np.asarray(o3d.io.read_point_cloud(str(out / "points" / "frame_0000.ply")).points)
    tree = o3d.geometry.KDTreeFlann(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64))))

    def relative_gap(points):
        sample = points[:: max(1, len(points) // 300)]
        gaps = [np.sqrt(tree.search_knn_vector_3d(p, 1)[2][0]) for p in sample]
        return np.median(gaps) / np.median(np.linalg.norm(points, axis=1))

    # The depth files are at the original resolution (3.2x the network's), so a resampled pixel sits
    # within about a network pixel of a cloud point, not exactly on one.
    assert relative_gap(_unprojected_without_pose(out, cameras[2], "cam02")) < 0.03
    pose = np.linalg.inv(np.array(cameras[0]["frames"][0]["camera_from_world"]))  # world-from-camera
    assert relative_gap(_unprojected_without_pose(out, cameras[0], "cam00") @ pose[:3, :3].T + pose[:3, 3]) < 0.03


def test_rebase_and_order_on_a_made_up_prediction():
    """The two steps by themselves: reorder a ref-first batch to input order, then rebase on its camera."""
    rng = np.random.default_rng(0)
    num_t, num_v, h, w = 2, 3, 4, 5
    names = ["cam1", "cam0", "cam2"]  # read_clip's order for --ref-camera cam1
    poses = np.tile(np.eye(4), (num_t, num_v, 1, 1))
    for t in range(num_t):
        for v in range(num_v):
            rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            poses[t, v, :3, :3] = rotation * np.sign(np.linalg.det(rotation))
            poses[t, v, :3, 3] = rng.normal(size=3)
    points = rng.normal(size=(num_t, num_v, h, w, 3))
    pred = Prediction(extrinsic=poses, intrinsic=np.tile(np.eye(3), (num_t, num_v, 1, 1)),
                      depth=np.ones((num_t, num_v, h, w)), depth_conf=np.ones((num_t, num_v, h, w)),
                      world_points=points)
    cams = [type("Cam", (), {"name": n})() for n in names]
    batch = ClipBatch(cameras=cams, images=np.zeros((num_t, num_v, 3, h, w)), transforms=[None] * 3,
                      frame_indices=np.zeros((num_t, num_v), int), timestamps=np.zeros((num_t, num_v)))
    ordered, moved = to_input_order(batch, pred)
    assert [c.name for c in ordered.cameras] == ["cam0", "cam1", "cam2"] and ordered.reference == 1
    rebased = rebase_on_reference(moved, ordered.reference)
    assert rebased.extrinsic[0, 1].tolist() == IDENTITY
    # Relative geometry is unchanged: each camera still sees each point at the same camera coordinates.
    cam_before = np.einsum("ij,...j->...i", poses[1, 2, :3, :3], points[1, 0]) + poses[1, 2, :3, 3]
    after = rebased.extrinsic[1, 2]
    cam_after = np.einsum("ij,...j->...i", after[:3, :3], rebased.world_points[1, 1]) + after[:3, 3]
    np.testing.assert_allclose(cam_after, cam_before, atol=1e-9)
