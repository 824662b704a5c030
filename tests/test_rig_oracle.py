"""Oracle: the synthetic rig's ground truth, fed through the real read + export path as the "prediction",
must come out as the ground truth again (world points, trajectories, depth, intrinsics)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import open3d as o3d
import pytest

from page4d_cli.pipeline.export import PointFilter
from page4d_cli.pipeline.preprocess import intrinsics_to_network
from page4d_cli.pipeline.read_clip import read_clip
from page4d_cli.pipeline.types import Prediction
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction
from tests.helpers import CAMS, example_module

T = 6


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rig = example_module("make_synthetic_rig").render_rig(224, 168, 24, cameras=4)
    batch = read_clip(CAMS, frames=T, size=224, mode="crop")  # 224 x 168: the rig's own size
    idx = batch.frame_indices[:, 0]
    V = len(batch.cameras)
    K_net = np.stack([intrinsics_to_network(rig["intrinsics"][v], batch.transforms[v]) for v in range(V)])
    pred = Prediction(
        extrinsic=np.broadcast_to(rig["extrinsics"], (T, V, 4, 4)).copy(),
        intrinsic=np.broadcast_to(K_net, (T, V, 3, 3)).copy(),
        depth=rig["depth"][idx].astype(np.float32),
        depth_conf=np.ones_like(rig["depth"][idx]),
        dynamic_mask=rig["dynamic_mask"][idx].astype(np.float32),
    )
    out = tmp_path_factory.mktemp("oracle")
    options = ExportOptions(point_filter=PointFilter(conf_percentile=0.0, edge_rel_threshold=None))
    export_reconstruction(out, pred, batch, options)
    return out, rig, batch, idx


@pytest.mark.slow
def test_points_reproduce_the_ground_truth_world_points(exported):
    out, rig, batch, idx = exported
    for t in range(T):
        cloud = o3d.io.read_point_cloud(str(out / "points" / f"frame_{t:04d}.ply"))
        truth = rig["world_points"][idx[t]].reshape(-1, 3)
        truth = truth[np.isfinite(truth).all(axis=1) & (rig["depth"][idx[t]].reshape(-1) > 0)]
        got = np.asarray(cloud.points)
        assert len(got) == len(truth)
        expected = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(truth.astype(np.float64)))
        distances = np.asarray(cloud.compute_point_cloud_distance(expected))
        extent = np.ptp(truth, axis=0).max()
        assert distances.max() < 1e-4 * extent  # sub-millimetre per unit of scene size
        assert cloud.has_colors()


def test_trajectories_are_the_ground_truth_camera_centres(exported):
    out, rig, batch, idx = exported
    for v in range(len(batch.cameras)):
        rows = [list(map(float, line.split())) for line in (out / "trajectory" / f"cam{v:02d}.txt").read_text().splitlines()
                if line and not line.startswith("#")]
        assert len(rows) == T
        R, t = rig["extrinsics"][v][:3, :3], rig["extrinsics"][v][:3, 3]
        centre = -R.T @ t
        for row in rows:
            assert np.allclose(row[1:4], centre, atol=1e-6)
            assert np.isclose(np.linalg.norm(row[4:8]), 1.0, atol=1e-6)


def test_depth_pngs_and_cameras_json_round_trip(exported):
    out, rig, batch, idx = exported
    cameras = json.loads((out / "cameras.json").read_text())
    scale = cameras["depth"]["scale"]
    for v, camera in enumerate(cameras["cameras"]):
        png = cv2.imread(str(out / "depth" / f"cam{v:02d}" / "frame_0002.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (168, 224)
        truth = rig["depth"][idx[2], v]
        assert np.abs(png * scale - truth)[truth > 0].max() <= scale / 2 + 1e-6
        frame = camera["frames"][2]
        assert np.allclose(np.array(frame["K"]), rig["intrinsics"][v], atol=1e-6)
        assert np.allclose(np.array(frame["camera_from_world"]), rig["extrinsics"][v], atol=1e-6)
