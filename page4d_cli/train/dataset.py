"""Training samples from ground-truth clips: what ``page4d train`` feeds the network and the losses.

    spec = SampleSpec(frames=4, cameras=2, size=112)
    dataset = GTClipDataset(list_clips("clips/"), spec, seed=0)
    item = dataset[3]          # dict of tensors, identical for the same (seed, epoch, index)

One item = one clip: T instants at a random stride (``stride_range``, shortened when the clip is too
short for it) from a random start, V of its cameras (a random subset when it has more; a random one of
them is the reference, placed first). Each (instant, camera) is preprocessed exactly as ``reconstruct``
does it (``pipeline.preprocess``: the network size follows the reference camera's aspect ratio, every
camera has its own crop/pad transform); intrinsics go through the same transform, depth and masks are
resampled nearest. Then, as VGGT's training does (its ground-truth normalisation, README "Training samples"):

- the world is re-based to the reference camera at the first instant (its extrinsic becomes identity);
- world points are unprojected from the network-resolution depth with the network-pixel K and the
  re-based extrinsic (so projecting them with K / E gives back the depth exactly);
- scale: avg = sum(|p| valid) / (count valid + 1e-3), clamped to [1e-6, 1e6]; points, depths and
  translations are divided by it (the mean distance of valid points to the origin becomes ~1);
- the pose encoding is the camera head's absT_quaR_FoV (``models.heads.pose_encoding``) from the network
  image size.

Item (float32 unless said; T instants, V cameras, H x W network pixels)::

    images [T, V, 3, H, W] in [0, 1]         depth [T, V, H, W]          depth_valid [T, V, H, W] bool
    world_points [T, V, H, W, 3]             point_valid [T, V, H, W] bool
    extrinsics [T, V, 3, 4] camera-from-world intrinsics [T, V, 3, 3] (network pixels)
    pose_enc [T, V, 9]                       masks [T, V, H, W] (1 = dynamic; 0 without GT masks)
    has_mask [] bool                         scale [] (avg above)        clip_index [] int64
    frame_indices [T, V] int64 (GT frames)   camera_indices [V] int64 (gt/cameras.json order)

Bad input raises ``DatasetError`` / ``DataFormatError`` (one line naming the clip and file): a clip
without gt/, fewer cameras or frames than asked for, depth of the wrong size, a missing map, NaN depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from models.errors import Page4DError
from page4d_cli.pipeline.options import DEFAULT_MODE, NETWORK_WIDTH, check_mode, check_network_width

SCALE_EPS = 1e-3  # VGGT: avg = sum |p| / (count + 1e-3)
SCALE_RANGE = (1e-6, 1e6)


class DatasetError(Page4DError):
    """Training data cannot be used (one line: the clip or file, what is wrong, the fix)."""


@dataclass(frozen=True)
class SampleSpec:
    """What one training sample holds: T instants x V cameras at network width ``size``.

    stride_range (lo, hi): the stride between sampled instants is drawn uniformly in [lo, hi] (GT frames).
    """

    frames: int = 4
    cameras: int = 4
    size: int = NETWORK_WIDTH
    mode: str = DEFAULT_MODE
    stride_range: tuple[int, int] = (1, 3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stride_range", tuple(int(s) for s in self.stride_range))
        for name in ("frames", "cameras"):
            if int(getattr(self, name)) < 1:
                raise DatasetError(f"--{name} {getattr(self, name)}: must be at least 1")
        check_network_width(self.size, DatasetError)  # the --size and --mode rules of reconstruct
        check_mode(self.mode, DatasetError)
        if len(self.stride_range) != 2 or not 1 <= self.stride_range[0] <= self.stride_range[1]:
            raise DatasetError(f"--stride-range {list(self.stride_range)}: must be two integers 1 <= MIN <= MAX")


class GTClipDataset(torch.utils.data.Dataset):
    """Ground-truth clips as training samples (see the module docstring for the item layout).

    clips: clip folders (``page4d_cli.data.list_clips``) or opened ``GTClip``s. Every clip is opened and
    checked (cameras, frames) here, before any training work. Items depend only on (seed, epoch, index):
    call ``set_epoch`` to draw new instants/cameras per epoch (workers pick it up when they start).
    """

    def __init__(self, clips: Sequence, spec: SampleSpec, seed: int = 0) -> None:
        from page4d_cli.data import read_gt_clip

        if not isinstance(spec, SampleSpec):
            raise TypeError(f"spec must be a SampleSpec, got {type(spec).__name__}")
        if not clips:
            raise DatasetError("no training clips given; pass a folder of ground-truth clips (page4d data synth)")
        self.spec = spec
        self.seed = int(seed)
        self.epoch = 0
        self.clips = [clip if hasattr(clip, "cameras_file") else read_gt_clip(clip) for clip in clips]
        for clip in self.clips:
            check_clip(clip, spec)

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        frames, cameras = draw_sample(clip, self.spec, self.rng(index))
        item = load_sample(clip, frames, cameras, self.spec)
        item["clip_index"] = torch.tensor(int(index))
        return item


def check_clip(clip, spec: SampleSpec) -> None:
    """``DatasetError`` when ``clip`` has fewer cameras or frames than a sample needs."""
    cameras_path = clip.cameras_file.path
    if len(clip.camera_names) < spec.cameras:
        raise DatasetError(f"{cameras_path}: the clip has {len(clip.camera_names)} camera(s), a sample needs "
                           f"--cameras {spec.cameras}; lower --cameras or leave the clip out")
    if clip.num_frames < spec.frames:
        raise DatasetError(f"{cameras_path}: the clip has {clip.num_frames} frame(s), a sample needs --frames "
                           f"{spec.frames}; lower --frames or leave the clip out")


def draw_sample(clip, spec: SampleSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(GT frame indices [T], camera indices [V] with the reference first) for one sample."""
    count, T = clip.num_frames, spec.frames
    longest = (count - 1) // (T - 1) if T > 1 else spec.stride_range[1]
    lo, hi = min(spec.stride_range[0], longest), min(spec.stride_range[1], longest)
    stride = int(rng.integers(max(lo, 1), max(hi, 1) + 1))
    start = int(rng.integers(0, count - (T - 1) * stride))
    frames = start + stride * np.arange(T)
    chosen = rng.permutation(len(clip.camera_names))[:spec.cameras]  # random subset, random order:
    return frames.astype(np.int64), chosen.astype(np.int64)  # chosen[0] is the (random) reference camera


def load_sample(clip, frames: np.ndarray, cameras: np.ndarray, spec: SampleSpec) -> dict:
    """Read, preprocess and normalise one sample (frames: GT frame indices; cameras[0] = reference)."""
    from page4d_cli.pipeline.preprocess import (
        intrinsics_to_network,
        make_transform,
        network_size_for,
        resize_image,
        resize_map_nearest,
        resize_mask,
    )

    T, V = len(frames), len(cameras)
    network_size = network_size_for(clip.image_size(int(cameras[0])), spec.size)
    W, H = network_size
    images = np.empty((T, V, 3, H, W), np.float32)
    depth = np.zeros((T, V, H, W), np.float32)
    masks = np.zeros((T, V, H, W), np.float32)
    K = np.empty((T, V, 3, 3), np.float64)
    E = np.empty((T, V, 4, 4), np.float64)
    has_mask = clip.has_masks
    for v, cam in enumerate(int(c) for c in cameras):
        tf = make_transform(clip.image_size(cam), network_size, spec.mode)
        for t, frame in enumerate(int(f) for f in frames):
            images[t, v] = resize_image(clip.image(cam, frame), tf)
            depth[t, v] = resize_map_nearest(read_depth_checked(clip, cam, frame), tf, fill=0.0)
            if has_mask:
                masks[t, v] = resize_mask(clip.mask(cam, frame), tf)
            K[t, v] = intrinsics_to_network(clip.K(cam, frame), tf)
            E[t, v] = clip.cam_from_world(cam, frame)
    E = E @ np.linalg.inv(E[0, 0])  # world = the reference camera at the first instant
    valid = depth > 0
    points = unproject_all(depth, K, E)
    distance = np.linalg.norm(points, axis=-1)
    # No valid GT point at all (an empty depth set): keep the units rather than divide by the clamp floor.
    avg = float(np.clip((distance * valid).sum() / (valid.sum() + SCALE_EPS), *SCALE_RANGE)) if valid.any() else 1.0
    points /= avg
    depth /= avg
    E[..., :3, 3] /= avg
    points[~valid] = 0.0
    item = {
        "images": torch.from_numpy(images),
        "depth": torch.from_numpy(depth),
        "depth_valid": torch.from_numpy(valid),
        "world_points": torch.from_numpy(points.astype(np.float32)),
        "point_valid": torch.from_numpy(valid.copy()),
        "extrinsics": torch.from_numpy(E[..., :3, :].astype(np.float32)),
        "intrinsics": torch.from_numpy(K.astype(np.float32)),
        "masks": torch.from_numpy(masks),
        "has_mask": torch.tensor(bool(has_mask)),
        "scale": torch.tensor(avg, dtype=torch.float32),
        "frame_indices": torch.from_numpy(np.repeat(frames[:, None], V, axis=1)),
        "camera_indices": torch.from_numpy(cameras.copy()),
    }
    item["pose_enc"] = pose_encoding(E, K, (H, W))
    return item


def pose_encoding(E: np.ndarray, K: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
    """absT_quaR_FoV ``[T, V, 9]`` of camera-from-world ``E [T, V, 4, 4]`` and network-pixel ``K``."""
    from models.heads.pose_encoding import extrinsic_intrinsic_to_encoding

    encoding = extrinsic_intrinsic_to_encoding(torch.from_numpy(E[..., :3, :]), torch.from_numpy(K), image_hw)
    return encoding.float()


def unproject_all(depth: np.ndarray, K: np.ndarray, E: np.ndarray) -> np.ndarray:
    """World points ``[T, V, H, W, 3]`` (float64) of z-depth ``[T, V, H, W]`` at network pixel centres."""
    from page4d_cli.pipeline.geometry import unproject_depth

    out = np.empty(depth.shape + (3,), np.float64)
    for t in range(depth.shape[0]):
        for v in range(depth.shape[1]):
            out[t, v] = unproject_depth(depth[t, v], K[t, v], E[t, v])
    return out


def read_depth_checked(clip, cam: int, frame: int) -> np.ndarray:
    """The GT depth map (0 = invalid), refusing NaN/Inf in float formats (the reader would mask them)."""
    path = clip.cameras_file.depth_path(cam, frame)
    if path.suffix == ".npy" and path.is_file():
        try:
            raw = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            raw = None  # the reader names the problem below
        if raw is not None and np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
            raise DatasetError(f"{path}: depth holds NaN/Inf values; write 0 for pixels without depth "
                               "(or check the clip with `page4d data check`)")
    elif path.suffix == ".exr" and path.is_file():
        import cv2

        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is not None and not np.isfinite(raw).all():
            raise DatasetError(f"{path}: depth holds NaN/Inf values; write 0 for pixels without depth "
                               "(or check the clip with `page4d data check`)")
    return clip.depth(cam, frame)
