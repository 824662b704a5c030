"""The ground-truth clip format: write -> read round trip, the shared cameras.json reader, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.errors import Page4DError
from page4d_cli.data import DataFormatError, list_clips, read_cameras_file, read_gt_clip, write_gt, write_gt_clip
from page4d_cli.pipeline.export import PointFilter
from page4d_cli.pipeline.read_clip import read_clip
from page4d_cli.pipeline.types import Prediction
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction

T, V, H, W = 3, 2, 28, 42


def make_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (T, V, H, W, 3), dtype=np.uint8)
    K = np.array([[[40.0, 0, 21], [0, 40, 14], [0, 0, 1]], [[35.0, 0, 20], [0, 36, 15], [0, 0, 1]]])
    E = np.broadcast_to(np.eye(4), (T, V, 4, 4)).copy()
    E[:, 1, 0, 3] = 0.5
    E[:, :, 2, 3] = np.arange(T)[:, None] * 0.1  # a moving rig
    depth = rng.uniform(1.0, 3.0, (T, V, H, W))
    depth[0, 0, :2, :3] = 0.0  # invalid pixels
    masks = rng.random((T, V, H, W)) > 0.7
    return images, K, E, depth, masks


@pytest.fixture()
def clip(tmp_path):
    images, K, E, depth, masks = make_arrays()
    path = write_gt_clip(tmp_path / "clip", ["cam00", "cam01"], images, K, E, depth, masks, fps=10.0)
    return path, (images, K, E, depth, masks)


def test_round_trip_gives_back_every_array(clip):
    path, (images, K, E, depth, masks) = clip
    gt = read_gt_clip(path)
    assert gt.camera_names == ["cam00", "cam01"] and gt.num_frames == T and gt.fps == 10.0 and gt.has_masks
    assert gt.root == path
    scale = gt.cameras_file.depth["scale"]
    for v, name in enumerate(gt.camera_names):
        assert gt.image_size(name) == (W, H) and gt.source(v).kind == "images"
        for t in range(T):
            np.testing.assert_array_equal(gt.K(name, t), K[v])  # name and index address the same camera
            np.testing.assert_array_equal(gt.cam_from_world(v, t), E[t, v])
            assert gt.K(v, t).dtype == np.float64 and gt.cam_from_world(v, t).shape == (4, 4)
            assert gt.timestamp(v, t) == pytest.approx(t / 10.0) and gt.source_frame(v, t) == t
            got = gt.depth(v, t)
            assert got.dtype == np.float32 and got.shape == (H, W)
            assert np.abs(got - depth[t, v]).max() <= scale / 2 + 1e-6
            assert gt.mask(v, t).dtype == bool
            np.testing.assert_array_equal(gt.mask(v, t), masks[t, v])
            np.testing.assert_array_equal(gt.image(v, t), images[t, v])  # lossless PNG input
    assert (gt.depth(0, 0)[:2, :3] == 0).all()
    points, valid = gt.world_points(1, 2)
    assert points.shape == (H, W, 3) and valid.sum() == H * W


def test_static_poses_npy_depth_and_no_masks(tmp_path):
    images, K, E, depth, _ = make_arrays(1)
    path = write_gt_clip(tmp_path / "c", ["a", "b"], images, K, E[0], depth.astype(np.float32), depth_format="npy")
    gt = read_gt_clip(path / "gt")  # the gt/ folder is accepted too
    assert gt.mask(0, 0) is None and not gt.has_masks
    np.testing.assert_array_equal(gt.cam_from_world("b", 2), E[0, 1])
    np.testing.assert_array_equal(gt.depth(1, 1), depth[1, 1].astype(np.float32))


def test_one_reader_serves_a_reconstruct_output(clip, tmp_path):
    """GT exported as a prediction through the real export path reads back with the same reader."""
    path, (_, K, E, depth, masks) = clip
    batch = read_clip(path, size=W)  # 42 x 28: the clip's own size, so no resampling
    assert [c.name for c in batch.cameras] == ["cam00", "cam01"] and batch.images.shape[-2:] == (H, W)
    pred = Prediction(extrinsic=E.copy(), intrinsic=np.broadcast_to(K, (T, V, 3, 3)).copy(),
                      depth=depth.astype(np.float32), depth_conf=np.ones((T, V, H, W), np.float32),
                      dynamic_mask=masks.astype(np.float32))
    out = tmp_path / "out"
    export_reconstruction(out, pred, batch, ExportOptions(point_filter=PointFilter(conf_percentile=0.0)))
    recon = read_cameras_file(out / "cameras.json")
    gt = read_gt_clip(path)
    assert recon.camera_names == gt.camera_names and recon.num_instants == T
    for v in range(V):
        track = recon.camera(v)
        np.testing.assert_array_equal(track.source_frames, np.arange(T))
        for t in range(T):
            np.testing.assert_allclose(track.K[t], gt.K(v, t), atol=1e-9)
            np.testing.assert_allclose(track.camera_from_world[t], gt.cam_from_world(v, t), atol=1e-12)
            scale = recon.depth["scale"]
            assert np.abs(recon.depth_map(v, t) - gt.depth(v, t)).max() <= scale / 2 + 1e-4
            np.testing.assert_array_equal(recon.mask_map(v, t), gt.mask(v, t))


def test_list_clips_from_a_clip_a_folder_and_a_list_file(clip, tmp_path):
    path, arrays = clip
    images, K, E, depth, _ = arrays
    second = write_gt_clip(tmp_path / "clip10", ["cam00", "cam01"], images, K, E, depth)
    write_gt_clip(tmp_path / "clip2", ["cam00", "cam01"], images, K, E, depth)
    (tmp_path / "not_a_clip").mkdir()
    assert list_clips(path) == [path]
    assert [p.name for p in list_clips(tmp_path)] == ["clip", "clip2", "clip10"]  # natural order
    listing = tmp_path / "val.txt"
    listing.write_text(f"# held out\nclip10\n\n{path}\n")
    assert list_clips(listing) == [second, path]
    listing.write_text("nowhere\n")
    with pytest.raises(DataFormatError, match="line 1"):
        list_clips(listing)
    with pytest.raises(DataFormatError, match="holds no clips"):
        list_clips(tmp_path / "not_a_clip")


def _edit_cameras(path, edit):
    file = path / "gt" / "cameras.json"
    data = json.loads(file.read_text())
    edit(data)
    file.write_text(json.dumps(data))


@pytest.mark.parametrize("damage, words", [
    (lambda p: shutil.rmtree(p / "gt"), "gt/cameras.json: not found"),
    (lambda p: (p / "gt" / "cameras.json").write_text("{not json"), "not readable JSON"),
    (lambda p: _edit_cameras(p, lambda d: d.update(format="other")), "expected 'page4d-cameras'"),
    (lambda p: _edit_cameras(p, lambda d: d["cameras"][1].update(name="cam07")), "only in gt: cam07"),
    (lambda p: _edit_cameras(p, lambda d: d["cameras"][0].update(image_size=[10, 10])), "fix image_size"),
    (lambda p: _edit_cameras(p, lambda d: d["cameras"][0]["frames"][1].update(K=[[1, 0], [0, 1]])),
     r"cameras\[0\].frames\[1\].K has shape"),
    (lambda p: _edit_cameras(p, lambda d: d["cameras"][0]["frames"][2].update(source_frame=9)), "source frame 9"),
])
def test_bad_clips_fail_with_one_line_naming_the_file(clip, damage, words):
    path, _ = clip
    damage(path)
    with pytest.raises(DataFormatError, match=words) as info:
        read_gt_clip(path)
    assert isinstance(info.value, Page4DError) and "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_missing_depth_file_is_named_when_read(clip):
    path, _ = clip
    (path / "gt" / "depth" / "cam01" / "frame_0001.png").unlink()
    gt = read_gt_clip(path)
    with pytest.raises(DataFormatError, match="cam01/frame_0001.png: depth map missing"):
        gt.depth("cam01", 1)


def test_writer_refuses_to_replace_what_it_did_not_write(clip, tmp_path):
    path, (images, K, E, depth, _) = clip
    with pytest.raises(DataFormatError, match="already exists"):
        write_gt_clip(path, ["cam00", "cam01"], images, K, E, depth)
    foreign = tmp_path / "foreign"
    (foreign / "gt").mkdir(parents=True)
    (foreign / "gt" / "notes.txt").write_text("mine")
    with pytest.raises(DataFormatError, match="not written by page4d"):
        write_gt(foreign, ["cam00", "cam01"], K, E, depth, overwrite=True)
    assert (foreign / "gt" / "notes.txt").read_text() == "mine"
    write_gt(path, ["cam00", "cam01"], K, E, depth * 2, overwrite=True)  # our own gt/ may be replaced
    assert not read_gt_clip(path).has_masks
    assert sorted(p.name for p in path.iterdir()) == ["cam00", "cam01", "gt"]  # no temporary left behind


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    images, K, E, depth, masks = make_arrays()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while cameras.json is written, after the images and depth maps

    monkeypatch.setattr("page4d_cli.data.gt_write.write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_gt_clip(tmp_path / "clip", ["cam00", "cam01"], images, K, E, depth, masks)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "videos").mkdir()
    with pytest.raises(KeyboardInterrupt):
        write_gt(tmp_path / "videos", ["cam00", "cam01"], K, E, depth)
    assert list((tmp_path / "videos").iterdir()) == []


def test_an_interrupted_overwrite_keeps_the_previous_ground_truth(clip, monkeypatch):
    path, (images, K, E, depth, _) = clip
    before = {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the new cameras.json is written

    monkeypatch.setattr("page4d_cli.data.gt_write.write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_gt(path, ["cam00", "cam01"], K, E, depth * 2, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        write_gt_clip(path, ["cam00", "cam01"], images, K, E, depth * 2, overwrite=True)
    after = {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    assert after == before  # the old clip and its gt/ are intact, byte for byte
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left beside it


def test_a_static_rig_may_give_one_pose_per_camera(clip):
    path, (_, K, E, _, _) = clip

    def once_per_camera(data):
        for v, camera in enumerate(data["cameras"]):
            camera["K"] = K[v].tolist()
            camera["camera_from_world"] = E[0, v].tolist()
            for frame in camera["frames"]:
                del frame["K"], frame["camera_from_world"]

    _edit_cameras(path, once_per_camera)
    gt = read_gt_clip(path)
    for t in range(T):
        np.testing.assert_array_equal(gt.cam_from_world("cam01", t), E[0, 1])
        np.testing.assert_array_equal(gt.K(0, t), K[0])
