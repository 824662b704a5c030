"""GTClipDataset: re-basing, scale normalisation, K/E/depth consistency, determinism, bad input.

The clips are written with the real GT writer (``page4d_cli.data.write_gt_clip``). Their scene is the
plane z = PLANE_Z of the GT world, seen by cameras that only rotate about their optical axis, so every
depth map is exact (constant per camera) and every unprojected point must land back on that plane.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.heads.pose_encoding import encoding_to_extrinsic_intrinsic
from page4d_cli.data import DataFormatError, write_gt_clip
from page4d_cli.pipeline.geometry import invert_rigid
from page4d_cli.train.dataset import DatasetError, GTClipDataset, SampleSpec

PLANE_Z = 6.0
SIZE = (96, 64)  # original (W, H)


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def make_clip(out, num_cameras=3, num_frames=6, seed=0, masks=True, depth_format="png"):
    """A clip of the plane z = PLANE_Z: cameras at heights z < PLANE_Z, spun about their optical axis."""
    rng = np.random.default_rng(seed)
    W, H = SIZE
    T, V = num_frames, num_cameras
    K = np.zeros((T, V, 3, 3))
    E = np.zeros((T, V, 4, 4))
    depth = np.zeros((T, V, H, W), np.float32)
    for v in range(V):
        f = 60.0 + 10 * v
        K[:, v] = [[f, 0, W / 2 + v], [0, f * 1.05, H / 2 - v], [0, 0, 1]]
        for t in range(T):
            centre = np.array([0.3 * v + 0.05 * t, -0.2 * v + 0.03 * t, 1.0 + 0.5 * v + 0.1 * t])
            world_from_cam = np.eye(4)
            world_from_cam[:3, :3] = rotation_z(0.4 * v + 0.1 * t)
            world_from_cam[:3, 3] = centre
            E[t, v] = invert_rigid(world_from_cam)
            depth[t, v] = PLANE_Z - centre[2]
    depth[:, :, 30:34, 40:46] = 0.0  # a few invalid pixels
    images = rng.integers(0, 256, (T, V, H, W, 3), dtype=np.uint8)
    mask = np.zeros((T, V, H, W), bool)
    mask[:, :, 20:40, 30:60] = True
    names = [f"cam{v:02d}" for v in range(V)]
    return write_gt_clip(out, names, images, K, E, depth, masks=mask if masks else None, depth_format=depth_format)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("gt")
    return [make_clip(root / f"clip{i}", seed=i) for i in range(2)]


SPEC = SampleSpec(frames=3, cameras=2, size=56, stride_range=(1, 2))


def test_item_shapes_and_reference_identity(clips):
    item = GTClipDataset(clips, SPEC, seed=0)[0]
    T, V, H, W = 3, 2, 42, 56
    assert item["images"].shape == (T, V, 3, H, W) and item["images"].dtype == torch.float32
    assert 0 <= float(item["images"].min()) and float(item["images"].max()) <= 1
    assert item["depth"].shape == item["masks"].shape == item["depth_valid"].shape == (T, V, H, W)
    assert item["world_points"].shape == (T, V, H, W, 3)
    assert item["extrinsics"].shape == (T, V, 3, 4) and item["intrinsics"].shape == (T, V, 3, 3)
    assert item["pose_enc"].shape == (T, V, 9)
    assert item["depth_valid"].dtype == torch.bool and bool(item["has_mask"])
    # the reference camera (first) at the first instant is the world frame
    assert torch.allclose(item["extrinsics"][0, 0], torch.eye(4)[:3], atol=1e-6)
    assert torch.allclose(item["pose_enc"][0, 0, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]), atol=1e-6)
    # some pixels were invalid in the GT and stay invalid; the mask box survives the transform
    assert not bool(item["depth_valid"].all()) and float(item["masks"].sum()) > 0


def test_scale_normalised_and_projection_matches_depth(clips):
    item = GTClipDataset(clips, SPEC, seed=1)[1]
    points, valid = item["world_points"].double(), item["depth_valid"]
    assert float(points[valid].norm(dim=-1).mean()) == pytest.approx(1.0, rel=1e-5)
    E, K = item["extrinsics"].double(), item["intrinsics"].double()
    cam = torch.einsum("tvij,tvhwj->tvhwi", E[..., :3], points) + E[..., None, None, :, 3]
    assert torch.allclose(cam[..., 2][valid], item["depth"].double()[valid], rtol=1e-5, atol=1e-6)
    pix = torch.einsum("tvij,tvhwj->tvhwi", K, cam)
    H, W = item["depth"].shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    u = pix[..., 0] / pix[..., 2]
    v = pix[..., 1] / pix[..., 2]
    assert torch.allclose(u[valid], xs.expand_as(u)[valid].double(), atol=1e-3)
    assert torch.allclose(v[valid], ys.expand_as(v)[valid].double(), atol=1e-3)


def test_points_lie_on_the_scene_plane(clips):
    """Undo the re-basing and the scale: every valid point of every camera is on z = PLANE_Z."""
    dataset = GTClipDataset(clips, SPEC, seed=2)
    for index in range(len(dataset)):
        item = dataset[index]
        clip = dataset.clips[index]
        ref, first = int(item["camera_indices"][0]), int(item["frame_indices"][0, 0])
        world_from_ref = invert_rigid(clip.cam_from_world(ref, first))
        points = item["world_points"].double().numpy()[item["depth_valid"].numpy()] * float(item["scale"])
        original = points @ world_from_ref[:3, :3].T + world_from_ref[:3, 3]
        assert np.allclose(original[:, 2], PLANE_Z, atol=1e-4)


def test_pose_encoding_decodes_to_the_cameras(clips):
    item = GTClipDataset(clips, SPEC, seed=3)[0]
    H, W = item["depth"].shape[-2:]
    extrinsic, intrinsic = encoding_to_extrinsic_intrinsic(item["pose_enc"].double(), (H, W))
    assert torch.allclose(extrinsic, item["extrinsics"].double(), atol=1e-5)
    assert torch.allclose(intrinsic[..., 0, 0], item["intrinsics"][..., 0, 0].double(), rtol=1e-5)
    assert torch.allclose(intrinsic[..., 1, 1], item["intrinsics"][..., 1, 1].double(), rtol=1e-5)


def test_deterministic_per_seed_epoch_and_index(clips):
    a, b = GTClipDataset(clips, SPEC, seed=5), GTClipDataset(clips, SPEC, seed=5)
    first, again = a[1], b[1]
    assert all(torch.equal(first[key], again[key]) for key in first)
    draws = set()
    for seed in range(12):
        item = GTClipDataset(clips, SPEC, seed=seed)[0]
        draws.add((tuple(item["camera_indices"].tolist()), tuple(item["frame_indices"][:, 0].tolist())))
    references = {cams[0] for cams, _ in draws}
    strides = {frames[1] - frames[0] for _, frames in draws}
    assert len(draws) > 4 and len(references) == 3 and strides == {1, 2}
    epochs = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        item = a[1]
        epochs.add((tuple(item["camera_indices"].tolist()), tuple(item["frame_indices"][:, 0].tolist())))
    assert len(epochs) > 1  # another epoch draws other instants / cameras
    a.set_epoch(0)
    assert torch.equal(a[1]["images"], first["images"])


def test_pad_mode_marks_padding_invalid(tmp_path):
    clip = make_clip(tmp_path / "wide", num_cameras=2, num_frames=3, masks=False)
    spec = SampleSpec(frames=2, cameras=2, size=56, mode="pad", stride_range=(1, 1))
    item = GTClipDataset([clip], spec)[0]
    # cameras share the reference's aspect ratio, so padding appears only through rounding to 14 px
    assert not bool(item["has_mask"]) and float(item["masks"].abs().sum()) == 0
    valid_depth = item["depth"][item["depth_valid"]]
    assert bool((valid_depth > 0).all())


def test_data_loader_batches_items(clips):
    loader = torch.utils.data.DataLoader(GTClipDataset(clips, SPEC, seed=0), batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (2, 3, 2, 3, 42, 56) and batch["has_mask"].shape == (2,)


# ----------------------------------------------------------------------------- bad input


def test_spec_is_validated():
    with pytest.raises(DatasetError, match="--size 50"):
        SampleSpec(size=50)
    with pytest.raises(DatasetError, match="--stride-range"):
        SampleSpec(stride_range=(3, 1))
    with pytest.raises(DatasetError, match="--mode"):
        SampleSpec(mode="stretch")


def test_too_few_cameras_or_frames(clips):
    with pytest.raises(DatasetError, match=r"cameras\.json: the clip has 3 camera\(s\).*--cameras 4"):
        GTClipDataset(clips, SampleSpec(frames=2, cameras=4, size=56))
    with pytest.raises(DatasetError, match=r"6 frame\(s\).*--frames 7"):
        GTClipDataset(clips, SampleSpec(frames=7, cameras=2, size=56))


def test_clip_without_gt(tmp_path):
    (tmp_path / "plain" / "cam00").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="gt/cameras.json"):
        GTClipDataset([tmp_path / "plain"], SPEC)


def test_bad_depth_maps_are_named(tmp_path):
    clip = make_clip(tmp_path / "npy", num_frames=3, depth_format="npy", masks=False)
    spec = SampleSpec(frames=3, cameras=3, size=56, stride_range=(1, 1))
    bad = clip / "gt" / "depth" / "cam01" / "frame_0001.npy"
    values = np.load(bad)
    values[5, 5] = np.nan
    np.save(bad, values)
    with pytest.raises(DatasetError, match=r"cam01/frame_0001\.npy: depth holds NaN"):
        GTClipDataset([clip], spec)[0]
    values[5, 5] = 1.0
    np.save(bad, values[:-2])  # wrong size
    with pytest.raises(DataFormatError, match=r"cam01/frame_0001\.npy: is 96x62"):
        GTClipDataset([clip], spec)[0]
    bad.unlink()  # a missing frame
    with pytest.raises(DataFormatError, match=r"cam01/frame_0001\.npy: depth map missing"):
        GTClipDataset([clip], spec)[0]
    assert json.loads((clip / "gt" / "cameras.json").read_text())["depth"]["format"] == "npy"
