"""A small, exactly known reconstruction for the preview and viewer tests (test-only helper).

Two cameras (the second one offset along +x and moving forward along z over time), T instants,
network size 56 x 42 from originals of 80 x 60 ("crop" keeps the whole frame: same aspect).
Depth: the left half of every image is ``NEAR`` and the right half ``FAR``; camera 1's top rows are
dynamic (mask 1) and its confidence grows left to right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from page4d_cli.pipeline.preprocess import intrinsics_to_network, make_transform
from page4d_cli.pipeline.types import CameraInfo, ClipBatch, Prediction

NEAR, FAR = 2.0, 5.0
ORIGINAL = (80, 60)
NETWORK = (56, 42)
FOCAL = 70.0


def known_clip(num_instants: int = 3, num_cameras: int = 2, mode: str = "crop",
               network: tuple[int, int] = NETWORK) -> tuple[Prediction, ClipBatch]:
    width, height = network
    transform = make_transform(ORIGINAL, network, mode)
    cameras = [CameraInfo(name=f"c{v}", path=Path(f"c{v}.mp4"), kind="video", size=ORIGINAL, fps=10.0,
                          num_frames=num_instants) for v in range(num_cameras)]
    rng = np.random.default_rng(0)
    images = rng.random((num_instants, num_cameras, 3, height, width)).astype(np.float32)
    depth = np.full((num_instants, num_cameras, height, width), FAR, dtype=np.float32)
    depth[..., : width // 2] = NEAR
    conf = np.ones_like(depth) + np.linspace(0, 5, width, dtype=np.float32)
    mask = np.zeros_like(depth)
    mask[:, 1:, : height // 3] = 1.0
    K_original = np.array([[FOCAL, 0, ORIGINAL[0] / 2], [0, FOCAL, ORIGINAL[1] / 2], [0, 0, 1]])
    K = np.broadcast_to(intrinsics_to_network(K_original, transform), (num_instants, num_cameras, 3, 3)).copy()
    extrinsic = np.broadcast_to(np.eye(4), (num_instants, num_cameras, 4, 4)).copy()
    for t in range(num_instants):
        for v in range(1, num_cameras):
            # camera centre c = (v, 0, 0.5 t) with identity rotation: translation = -c
            extrinsic[t, v, :3, 3] = [-float(v), 0.0, -0.5 * t]
    frames = np.repeat(np.arange(num_instants)[:, None], num_cameras, axis=1)
    batch = ClipBatch(cameras=cameras, images=images, transforms=[transform] * num_cameras,
                      frame_indices=frames, timestamps=frames / 10.0)
    pred = Prediction(extrinsic=extrinsic, intrinsic=K, depth=depth, depth_conf=conf, dynamic_mask=mask)
    return pred, batch


def camera_centres(pred: Prediction) -> np.ndarray:
    """[T, V, 3] centres, computed independently of page4d's geometry helpers."""
    R, t = pred.extrinsic[..., :3, :3], pred.extrinsic[..., :3, 3]
    return -np.einsum("...ji,...j->...i", R, t)


def read_recording(rrd: Path, contents: list[str]):
    """(entity paths, table with one row per instant) of an .rrd, read with Rerun's own dataframe API
    (a local catalog server); skips when rerun-sdk[catalog] is not installed."""
    import pytest

    rr = pytest.importorskip("rerun", reason="rerun-sdk is the optional extra page4d[view]")
    pytest.importorskip("datafusion", reason="reading .rrd back needs rerun-sdk[catalog] (in page4d[dev])")
    with rr.server.Server(datasets={"page4d": [str(rrd)]}) as server:
        dataset = server.client().get_dataset("page4d")
        entities = {column.entity_path for column in dataset.schema() if hasattr(column, "entity_path")}
        table = dataset.filter_contents(contents).reader(index="instant").to_pandas()
    return entities, table.sort_values("instant").reset_index(drop=True)
