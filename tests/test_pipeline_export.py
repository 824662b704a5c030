"""Export side of ``page4d reconstruct``: geometry, writers, records, atomic output.

Ground truth is analytic: pinhole cameras inside a large "room" sphere looking at a moving ball, so
every pixel's depth and world point are known exactly (ray-sphere intersection).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from page4d_cli.data.synth_scene import look_at
from page4d_cli.pipeline import export, geometry, preprocess
from page4d_cli.pipeline.export_colmap import write_colmap_model
from page4d_cli.pipeline.output_dir import OutputExistsError, atomic_output_dir, check_output_dir
from page4d_cli.pipeline.records import build_cameras_json, build_run_record, validate_cameras_json, write_run_json
from page4d_cli.pipeline.types import CameraInfo, ClipBatch, ImageTransform, Prediction
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction
from tests.helpers import random_rotation

H, W = 28, 42  # network size (multiples of 14)
Y_DOWN = (0.0, -1.0, 0.0)  # this scene's world has y down, like the cameras' (OpenCV) axes
T, V = 3, 2


# ----------------------------------------------------------------------------- synthetic scene


def render(k, center, rotation, spheres, height=H, width=W):
    """Exact z-depth [H, W], world points [H, W, 3] and 'hit the ball' mask for spheres [(c, r, inside)]."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)  # pixel-centre convention
    rays_cam = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(k).T  # z = 1 in camera frame
    rays = rays_cam @ rotation  # world directions (R^T d); camera-z component stays 1 => lambda = z-depth
    best = np.full((height, width), np.inf)
    ball = np.zeros((height, width), bool)
    for c, r, inside in spheres:
        oc = center - c
        a = np.sum(rays * rays, -1)
        b = 2 * rays @ oc
        disc = b * b - 4 * a * (oc @ oc - r * r)
        root = np.sqrt(np.maximum(disc, 0))
        lam = (-b + root) / (2 * a) if inside else np.where(disc > 0, (-b - root) / (2 * a), np.inf)
        lam = np.where(lam > 0, lam, np.inf)
        ball |= (lam < best) & (not inside)
        best = np.minimum(best, lam)
    return best, center + best[..., None] * rays, ball


def make_scene(seed=0, transforms=None, num_t=T):
    """A Prediction that is exactly right, the ClipBatch it belongs to, and the GT camera centres."""
    rng = np.random.default_rng(seed)
    k = np.array([[40.0, 0, W / 2], [0, 38.0, H / 2], [0, 0, 1]])
    ext = np.zeros((num_t, V, 4, 4))
    depth = np.zeros((num_t, V, H, W))
    points = np.zeros((num_t, V, H, W, 3))
    dyn = np.zeros((num_t, V, H, W), np.float32)
    centers = np.zeros((num_t, V, 3))
    for t in range(num_t):
        ball = np.array([0.3 * t, 0.1, 5.0])
        spheres = [(np.zeros(3), 20.0, True), (ball, 1.2, False)]
        for v in range(V):
            c = np.array([2.0 * v - 1.0, -0.3 + 0.1 * t, 0.2 * v]) + rng.normal(0, 0.05, 3)
            ext[t, v] = look_at(c, ball + rng.normal(0, 0.2, 3), up=Y_DOWN)
            depth[t, v], points[t, v], mask = render(k, c, ext[t, v, :3, :3], spheres)
            dyn[t, v] = mask
            centers[t, v] = c
    pred = Prediction(
        extrinsic=ext, intrinsic=np.broadcast_to(k, (num_t, V, 3, 3)).copy(), depth=depth,
        depth_conf=rng.uniform(1, 10, (num_t, V, H, W)), world_points=points,
        world_points_conf=rng.uniform(1, 10, (num_t, V, H, W)), dynamic_mask=dyn,
    )
    if transforms is None:
        transforms = [identity_transform(), identity_transform()]
    cams = [CameraInfo(f"cam{v}", Path(f"/in/cam{v}.mp4"), "video", tr.original_size, 30.0, 100)
            for v, tr in enumerate(transforms)]
    batch = ClipBatch(
        cameras=cams, images=rng.uniform(0, 1, (num_t, V, 3, H, W)).astype(np.float32),
        transforms=transforms, frame_indices=np.arange(num_t)[:, None] * 5 + np.zeros((1, V), int),
        timestamps=(np.arange(num_t)[:, None] * 5 + np.zeros((1, V))) / 30.0,
    )
    return pred, batch, centers


def identity_transform():
    return ImageTransform((W, H), (W, H), (1.0, 1.0), (0.0, 0.0), "crop", (0, 0, W, H))


def crop_transform():
    """Original 60 x 36 scaled by 0.8 (48 x 28.8 -> covers 42 x 28), centre-cropped."""
    s = 0.8
    return ImageTransform((60, 36), (W, H), (s, s), (-(60 * s - W) / 2, -(36 * s - H) / 2), "crop", (0, 0, W, H))


def pad_transform():
    """Original 84 x 40 scaled by 0.5 to 42 x 20, padded by 4 rows above and below."""
    return ImageTransform((84, 40), (W, H), (0.5, 0.5), (0.0, 4.0), "pad", (0, 4, W, 24))


# ----------------------------------------------------------------------------- geometry


def test_unprojection_recovers_exact_world_points():
    pred, _, _ = make_scene()
    for t in range(T):
        for v in range(V):
            got = geometry.unproject_depth(pred.depth[t, v], pred.intrinsic[t, v], pred.extrinsic[t, v])
            scale = np.abs(pred.world_points[t, v]).max()
            assert np.abs(got - pred.world_points[t, v]).max() < 1e-9 * scale


def test_camera_centers_and_inverse():
    pred, _, centers = make_scene()
    assert np.allclose(geometry.camera_centers(pred.extrinsic), centers, atol=1e-12)
    assert np.allclose(geometry.invert_rigid(pred.extrinsic) @ pred.extrinsic, np.eye(4), atol=1e-12)


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(1)
    rotations = [random_rotation(rng) for _ in range(200)]
    for axis in np.eye(3):  # 180 degree turns: w = 0, the hard case for the naive formula
        rotations.append(2 * np.outer(axis, axis) - np.eye(3))
    rotations = np.stack(rotations)
    quats = geometry.rotation_to_quaternion(rotations)
    assert np.allclose(np.linalg.norm(quats, axis=-1), 1)
    assert np.all(quats[:, 3] >= 0)
    assert np.allclose(geometry.quaternion_to_rotation(quats), rotations, atol=1e-12)
    theta = 0.7  # rotation about z: q = (0, 0, sin(theta/2), cos(theta/2))
    rz = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    assert np.allclose(geometry.rotation_to_quaternion(rz), [0, 0, np.sin(theta / 2), np.cos(theta / 2)])


@pytest.mark.parametrize("make_transform", [crop_transform, pad_transform])
def test_intrinsics_to_original_maps_projections(make_transform):
    tr = make_transform()
    k_net = np.array([[40.0, 0.3, 20.5], [0, 38.0, 13.0], [0, 0, 1]])
    k_orig = preprocess.intrinsics_to_original(k_net, tr)
    pts = np.random.default_rng(2).uniform([-1, -1, 2], [1, 1, 6], (50, 3))
    net = pts @ k_net.T
    orig = pts @ k_orig.T
    net_xy, orig_xy = net[:, :2] / net[:, 2:], orig[:, :2] / orig[:, 2:]
    assert np.allclose(net_xy, orig_xy * np.array(tr.scale) + np.array(tr.offset), atol=1e-9)


def test_network_map_to_original_nearest_and_fill():
    values = np.arange(H * W, dtype=np.float64).reshape(H, W) + 1
    up = ImageTransform((2 * W, 2 * H), (W, H), (0.5, 0.5), (0.0, 0.0), "crop", (0, 0, W, H))
    assert np.array_equal(preprocess.network_map_to_original(values, up, fill=0.0),
                          values.repeat(2, 0).repeat(2, 1))
    # Crop: original columns 0..2 land at x = (j + 0.5) * 0.8 - 3 < 0 -> cropped away -> fill.
    crop = preprocess.network_map_to_original(values, crop_transform(), fill=np.nan)
    assert crop.shape == (36, 60)
    assert np.all(np.isnan(crop[:, :3])) and np.all(np.isnan(crop[:, -3:]))
    j, i = 30, 20
    x, y = (j + 0.5) * 0.8 - 3.0, (i + 0.5) * 0.8 - 0.4
    assert crop[i, j] == values[int(np.floor(y)), int(np.floor(x))]
    # Pad: every original pixel is content; rows map inside the valid box.
    pad = preprocess.network_map_to_original(values, pad_transform(), fill=0.0)
    assert pad.shape == (40, 84) and np.all(pad > 0)
    assert np.array_equal(pad[0], values[4].repeat(2))


def test_nearest_mapping_keeps_the_dtype_and_widens_integer_maps_for_a_nan_fill():
    rng = np.random.default_rng(3)
    for tr in (crop_transform(), pad_transform()):
        maps = rng.uniform(1, 2, (H, W, 3)).astype(np.float32)
        back = preprocess.network_map_to_original(maps, tr, fill=0.0)
        assert back.dtype == np.float32 and back.shape == (tr.original_size[1], tr.original_size[0], 3)
    labels = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    widened = preprocess.network_map_to_original(labels, crop_transform(), fill=np.nan)  # not uint8
    as_float = preprocess.network_map_to_original(labels.astype(np.float64), crop_transform(), fill=np.nan)
    assert np.isnan(widened[:, :3]).all() and np.array_equal(widened, as_float, equal_nan=True)


def test_depth_edges_flag_the_step_only():
    depth = np.full((10, 12), 2.0)
    depth[:, 6:] = 5.0
    depth[3, 3] = 2.05  # 2.5 % bump: below the 5 % threshold
    edges = geometry.depth_edges(depth, 0.05)
    assert np.all(edges[:, 5:7]) and not np.any(edges[:, :5]) and not np.any(edges[:, 7:])
    depth[0, 0] = 0.0  # invalid pixel and its neighbours are flagged
    edges = geometry.depth_edges(depth, 0.05)
    assert edges[0, 0] and edges[1, 1] and not edges[2, 2]


# ----------------------------------------------------------------------------- writers


def test_trajectory_is_tum_and_matches_gt(tmp_path):
    pred, batch, centers = make_scene()
    export.write_trajectories(tmp_path, pred, batch)
    for v in range(V):
        rows = np.loadtxt(tmp_path / "trajectory" / f"cam{v:02d}.txt", comments="#")
        assert rows.shape == (T, 8)
        assert np.allclose(rows[:, 0], batch.timestamps[:, v], atol=1e-9)
        assert np.allclose(rows[:, 1:4], centers[:, v], atol=1e-9)
        r_c2w = geometry.quaternion_to_rotation(rows[:, 4:8])
        assert np.allclose(r_c2w, np.swapaxes(pred.extrinsic[:, v, :3, :3], -1, -2), atol=1e-9)


def test_depth_png_round_trip_within_half_scale(tmp_path):
    pred, batch, _ = make_scene(transforms=[identity_transform(), crop_transform()])
    pred.depth[1, 0, 2, 3] = np.nan  # invalid stays invalid
    record = export.write_depth_maps(tmp_path, pred, batch, "png")
    scale = record["scale"]
    assert np.isclose(scale, np.nanmax(pred.depth) / 65535)
    png = cv2.imread(str(tmp_path / "depth/cam00/frame_0001.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (H, W)
    assert png[2, 3] == 0
    ok = np.isfinite(pred.depth[1, 0])
    assert np.abs(png[ok] * scale - pred.depth[1, 0][ok]).max() <= scale / 2 + 1e-12
    # Camera 1 is at its original 60 x 36 resolution; compare with a hand-computed nearest sample.
    png1 = cv2.imread(str(tmp_path / "depth/cam01/frame_0002.png"), cv2.IMREAD_UNCHANGED)
    assert png1.shape == (36, 60) and np.all(png1[:, :3] == 0)
    i, j = 17, 40
    ref = pred.depth[2, 1, int((i + 0.5) * 0.8 - 0.4), int((j + 0.5) * 0.8 - 3.0)]
    assert abs(png1[i, j] * scale - ref) <= scale / 2 + 1e-12


def test_depth_npy_and_exr(tmp_path):
    pred, batch, _ = make_scene()
    export.write_depth_maps(tmp_path, pred, batch, "npy")
    assert np.allclose(np.load(tmp_path / "depth/cam01/frame_0002.npy"), pred.depth[2, 1], rtol=1e-6)
    if cv2.haveImageWriter(".exr"):
        export.write_depth_maps(tmp_path / "e", pred, batch, "exr")
        back = cv2.imread(str(tmp_path / "e/depth/cam00/frame_0000.exr"), cv2.IMREAD_UNCHANGED)
        assert np.allclose(back, pred.depth[0, 0], rtol=1e-6)
    else:
        with pytest.raises(export.ExportError, match="npy"):
            export.write_depth_maps(tmp_path / "e", pred, batch, "exr")


def test_masks_binary_and_probability(tmp_path):
    pred, batch, _ = make_scene()
    pred.dynamic_mask[0, 0, :2, :2] = 0.6
    export.write_dynamic_masks(tmp_path, pred, batch, "binary")
    m = cv2.imread(str(tmp_path / "masks/cam00/frame_0000.png"), cv2.IMREAD_UNCHANGED)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    assert np.array_equal(m == 255, pred.dynamic_mask[0, 0] > 0.5) and m.any() and not m.all()
    export.write_dynamic_masks(tmp_path / "p", pred, batch, "probability")
    p = cv2.imread(str(tmp_path / "p/masks/cam00/frame_0000.png"), cv2.IMREAD_UNCHANGED)
    assert p[0, 0] == round(0.6 * 255)
    pred.dynamic_mask = None
    assert export.write_dynamic_masks(tmp_path / "none", pred, batch) is None


def test_ply_counts_follow_the_filter_and_read_back(tmp_path):
    pred, batch, _ = make_scene(transforms=[identity_transform(), pad_transform()])
    content = np.zeros((H, W), bool)
    content[4:24] = True  # the pad transform's valid box, written out by hand
    threshold = 4.0
    filt = export.PointFilter(conf_threshold=threshold, edge_rel_threshold=None)
    summary = export.write_point_clouds(tmp_path, pred, batch, filt)
    for t in range(T):
        expected = np.count_nonzero(pred.depth_conf[t, 0] >= threshold)
        expected += np.count_nonzero((pred.depth_conf[t, 1] >= threshold) & content)
        cloud = o3d.io.read_point_cloud(str(tmp_path / "points" / f"frame_{t:04d}.ply"))
        assert len(cloud.points) == expected == summary["num_points"][t]
        assert cloud.has_colors()
        # Every point lies on the GT surface: it is one of the GT world points of that instant.
        keep0 = pred.depth_conf[t, 0] >= threshold
        assert np.allclose(np.asarray(cloud.points)[: keep0.sum()], pred.world_points[t, 0][keep0], atol=1e-9)
        colors0 = np.moveaxis(batch.images[t, 0], 0, -1)[keep0]
        assert np.abs(np.asarray(cloud.colors)[: keep0.sum()] - colors0).max() <= 0.5 / 255 + 1e-6
    assert "binary" in (tmp_path / "points/frame_0000.ply").read_bytes()[:200].decode("latin1")


def test_ply_percentile_edges_voxel_head_and_empty(tmp_path):
    pred, batch, _ = make_scene()
    all_px = T * V * H * W
    summary = export.write_point_clouds(tmp_path / "p", pred, batch,
                                        export.PointFilter(conf_percentile=25, edge_rel_threshold=None))
    assert abs(sum(summary["num_points"]) - 0.75 * all_px) <= T * V
    with_edges = export.write_point_clouds(tmp_path / "e", pred, batch, export.PointFilter(conf_percentile=0))
    edges = sum(np.count_nonzero(geometry.depth_edges(pred.depth[t, v])) for t in range(T) for v in range(V))
    assert edges > 0 and sum(with_edges["num_points"]) == all_px - edges
    voxel = export.write_point_clouds(tmp_path / "v", pred, batch, export.PointFilter(conf_percentile=0, voxel=1.0))
    assert 0 < sum(voxel["num_points"]) < sum(with_edges["num_points"])
    pred.world_points = pred.world_points + 100.0  # the head's points are distinguishable
    export.write_point_clouds(tmp_path / "h", pred, batch,
                              export.PointFilter(conf_percentile=0, edge_rel_threshold=None, points_from="head"))
    head = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "h/points/frame_0000.ply")).points)
    assert np.allclose(head[: H * W], pred.world_points[0, 0].reshape(-1, 3))
    empty = export.write_point_clouds(tmp_path / "z", pred, batch, export.PointFilter(conf_threshold=1e9))
    assert empty["num_points"] == [0] * T
    assert len(o3d.io.read_point_cloud(str(tmp_path / "z/points/frame_0000.ply")).points) == 0


# ----------------------------------------------------------------------------- COLMAP + records


def parse_colmap(sparse: Path):
    """Minimal COLMAP text reader: {cam_id: (model, w, h, params)}, {img_id: (q, t, cam, name)}, points."""
    def data_lines(name, keep_empty=False):
        lines = (sparse / name).read_text().split("\n")[:-1]
        return [ln for ln in lines if not ln.startswith("#") and (keep_empty or ln.strip())]

    cameras = {}
    for ln in data_lines("cameras.txt"):
        f = ln.split()
        cameras[int(f[0])] = (f[1], int(f[2]), int(f[3]), np.array(f[4:], float))
    images = {}
    lines = data_lines("images.txt", keep_empty=True)
    assert len(lines) % 2 == 0
    for header, _observations in zip(lines[0::2], lines[1::2]):
        f = header.split()
        images[int(f[0])] = (np.array(f[1:5], float), np.array(f[5:8], float), int(f[8]), f[9])
    points = np.array([[float(x) for x in ln.split()[1:7]] for ln in data_lines("points3D.txt")])
    assert all(not ln.endswith(" ") for ln in (sparse / "points3D.txt").read_text().split("\n"))
    return cameras, images, points


def test_full_export_cameras_json_and_colmap_agree(tmp_path):
    pred, batch, _ = make_scene(transforms=[crop_transform(), pad_transform()])
    frames = [np.full((tr.original_size[1], tr.original_size[0], 3), 40 * (v + 1), np.uint8)
              for v, tr in enumerate(batch.transforms)]
    opts = ExportOptions(point_filter=export.PointFilter(conf_threshold=3.0), confidence_format="png",
                         colmap_instant=1)
    summary = export_reconstruction(tmp_path, pred, batch, opts, colmap_frames=frames)
    data = json.loads((tmp_path / "cameras.json").read_text())
    validate_cameras_json(data)
    assert data["depth"]["scale"] == summary["depth"]["scale"]
    assert "camera cam0" in data["world_frame"]
    for v, cam in enumerate(data["cameras"]):
        assert cam["image_size"] == list(batch.transforms[v].original_size)
        assert [f["source_frame"] for f in cam["frames"]] == list(batch.frame_indices[:, v])

    cameras, images, points = parse_colmap(tmp_path / "colmap/sparse/0")
    assert len(cameras) == len(images) == V
    for image_id, (q_wxyz, tvec, cam_id, name) in images.items():
        v = image_id - 1
        frame = data["cameras"][v]["frames"][1]
        k = np.array(frame["K"])
        model, w, h, params = cameras[cam_id]
        assert model == "PINHOLE" and [w, h] == data["cameras"][v]["image_size"]
        assert np.allclose(params, [k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
        e = np.array(frame["camera_from_world"])
        rot = geometry.quaternion_to_rotation(np.r_[q_wxyz[1:], q_wxyz[0]])
        assert np.allclose(rot, e[:3, :3], atol=1e-9) and np.allclose(tvec, e[:3, 3], atol=1e-9)
        img = cv2.imread(str(tmp_path / "colmap/images" / name))
        assert img.shape == (h, w, 3) and img[0, 0, 0] == 40 * (v + 1)
    cloud = o3d.io.read_point_cloud(str(tmp_path / "points/frame_0001.ply"))
    assert len(points) == len(cloud.points) > 0
    assert np.allclose(points[:, :3], np.asarray(cloud.points), atol=1e-6 * np.abs(points).max())
    # K in original pixels really projects the GT points to the original-image pixels.
    k1 = np.array(data["cameras"][1]["frames"][1]["K"])
    x_cam = pred.world_points[1, 1, 10, 7] @ pred.extrinsic[1, 1, :3, :3].T + pred.extrinsic[1, 1, :3, 3]
    uv = (k1 @ x_cam)[:2] / x_cam[2]
    assert np.allclose(uv, (np.array([7.5, 10.5]) - [0.0, 4.0]) / 0.5, atol=1e-9)


def test_cameras_json_schema_rejects_missing_keys():
    pred, batch, _ = make_scene()
    data = build_cameras_json(pred, batch, files={})
    validate_cameras_json(data)
    broken = json.loads(json.dumps(data))
    del broken["cameras"][1]["frames"][2]["K"]
    with pytest.raises(ValueError, match=r"cameras\[1\]\.frames\[2\]\.K"):
        validate_cameras_json(broken)
    broken = json.loads(json.dumps(data))
    del broken["world_frame"]
    with pytest.raises(ValueError, match="world_frame"):
        validate_cameras_json(broken)


def test_run_json_adds_versions_and_requires_keys(tmp_path):
    info = {"command_line": "page4d reconstruct in out", "device": "cpu", "dtype": "float32",
            "weights": {"name": "tiny", "sha256": "00"}, "timings_s": {"network": 1.5},
            "peak_memory": {"cpu_rss_bytes": 123}}
    record = write_run_json(tmp_path, info)
    back = json.loads((tmp_path / "run.json").read_text())
    assert back == json.loads(json.dumps(record))
    assert back["versions"]["numpy"] == np.__version__ and back["versions"]["python"]
    assert back["timings_s"] == {"network": 1.5}
    del info["dtype"]
    with pytest.raises(ValueError, match="dtype"):
        build_run_record(info)


def test_colmap_without_frames_uses_network_resolution(tmp_path):
    pred, batch, _ = make_scene()
    record = write_colmap_model(tmp_path, pred, batch, 0, np.zeros((0, 3)), np.zeros((0, 3)))
    cameras, images, points = parse_colmap(tmp_path / "sparse/0")
    assert record["resolution"] == "network" and cameras[1][1:3] == (W, H) and len(points) == 0


# ----------------------------------------------------------------------------- atomic output


def test_existing_output_is_refused_without_overwrite(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite") as info:
        check_output_dir(target)
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(OutputExistsError):
        with atomic_output_dir(target):
            pytest.fail("the body must not run")


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_no_partial_output(tmp_path, error):
    target = tmp_path / "out"
    with pytest.raises(type(error)):
        with atomic_output_dir(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-")
            (tmp / "points").mkdir()
            (tmp / "points/frame_0000.ply").write_text("partial")
            raise error
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (target / "run.json").write_text('{"format": "page4d-run"}')  # a page4d output: replaceable
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            assert (target / "old.txt").exists()  # untouched while we work
            raise RuntimeError("fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (target / "old.txt").exists()
    with atomic_output_dir(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
